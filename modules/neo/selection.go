package neo

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/projectneo/caddy-neo/internal/cfblock"
	"github.com/projectneo/caddy-neo/internal/neometrics"
	"github.com/projectneo/caddy-neo/modules/zonelb"
)

func init() {
	caddy.RegisterModule(ZoneSelection{})
}

var mSelections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "neo", Name: "upstream_selections_total",
	Help: "Upstream selections by tenant, app (or service), zone of the chosen replica and outcome (local, spill, panic, none).",
}, []string{"tenant", "app", "zone", "outcome"})

// ZoneSelection is the reverse proxy's selection policy
// `http.reverse_proxy.selection_policies.neo_zone` (Caddyfile
// `lb_policy neo_zone`), used with `dynamic neo`: zone-aware round robin over
// the resolved route's pool (package zonelb): the request's local zone first,
// spilling to the other zones in the neo app's zone_order when the local
// zone's healthy share falls below local_threshold, and to every replica
// when the pool's healthy share falls below panic_threshold. Each tenant's
// app and stage has its own pool and rotation.
//
// A replica is healthy when Caddy's passive health checks (fail_duration,
// max_fails, unhealthy_status, unhealthy_latency) and max_requests allow it,
// and, with health_path set, when its last active check passed. Active
// checkers (one per replica address and check configuration) are shared by
// every config through a usage pool and stopped when the last config using
// them is unloaded.
//
// Placeholder: `{neo.upstream.zone}`, the chosen replica's zone.
type ZoneSelection struct {
	// Zone is the request's local zone. Default: the route's zone (neo_route
	// sets it): behind a stage gateway the zone the request's NATS subject
	// addressed, else this node's zone.
	Zone string `json:"zone,omitempty"`
	// ZoneHeader adds `Neo-Upstream-Zone: <zone>` to responses. Default: off.
	ZoneHeader bool `json:"zone_header,omitempty"`
	// HealthChecks configure active checks. Default: off (no path).
	HealthChecks zonelb.CheckConfig `json:"health_checks,omitempty"`

	checks *zonelb.CheckerSet
}

// CaddyModule returns the Caddy module information.
func (ZoneSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.neo_zone",
		New: func() caddy.Module { return new(ZoneSelection) },
	}
}

// Provision starts nothing: checkers start on first use of a replica.
func (s *ZoneSelection) Provision(ctx caddy.Context) error {
	if err := s.HealthChecks.Validate(); err != nil {
		return err
	}
	s.checks = zonelb.NewCheckerSet(s.HealthChecks)
	return neometrics.Register(ctx.GetMetricsRegistry(), mSelections)
}

// Cleanup releases the active checkers this config used.
func (s *ZoneSelection) Cleanup() error {
	s.checks.Close()
	return nil
}

// upstreamHealth is a route's upstreams as zonelb sees them.
type upstreamHealth struct {
	ups    reverseproxy.UpstreamPool
	checks *zonelb.CheckerSet
}

func (h *upstreamHealth) Healthy(i int) bool {
	u := h.ups[i]
	return u.Available() && h.checks.Healthy(u.Dial)
}

// Select chooses the replica.
func (s *ZoneSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	rt, ok := RouteFromRequest(r)
	if !ok || rt.Pool == nil || rt.Pool.Len() != len(pool) {
		return nil // not resolved by neo_route, or not `dynamic neo`: nothing of another tenant
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	zone := rt.Zone
	if s.Zone != "" && repl != nil {
		zone = repl.ReplaceAll(s.Zone, "")
	}
	var i int
	var out zonelb.Outcome
	if len(pool) <= zonelb.MaxBits {
		var bits uint64
		for j, u := range pool {
			if u.Available() && s.checks.Healthy(u.Dial) {
				bits |= 1 << uint(j)
			}
		}
		i, out = rt.Pool.SelectBits(bits, rt.Pool.ZoneIndex(zone))
	} else {
		i, out = rt.Pool.SelectFrom(&upstreamHealth{ups: pool, checks: s.checks}, rt.Pool.ZoneIndex(zone))
	}
	app := rt.App
	if app == "" {
		app = rt.Service
	}
	zi, chosen := -1, ""
	if i >= 0 {
		zi, chosen = rt.Pool.MemberZone(i), rt.Pool.Member(i).Zone
	}
	countSelection(rt, app, zi, chosen, out)
	if i < 0 {
		return nil
	}
	if repl != nil {
		if rt.stats != nil && zi < len(rt.stats.zoneNames) {
			repl.Set("neo.upstream.zone", rt.stats.zoneNames[zi]) // boxed once per pool, not per request
		} else {
			repl.Set("neo.upstream.zone", chosen)
		}
	}
	if s.ZoneHeader {
		w.Header().Set("Neo-Upstream-Zone", chosen)
	}
	rt.upstream, rt.upstreamZone = rt.Replicas[i].Address, chosen
	return pool[i]
}

// countSelection counts a selection in the route's cached series (a label
// lookup only the first time a pool sees a zone and outcome).
func countSelection(rt *Route, app string, zone int, zoneName string, out zonelb.Outcome) {
	var lc *lazyCounter
	if st := rt.stats; st != nil {
		if k := (zone+1)*selOutcomes + int(out); k >= 0 && k < len(st.sel) {
			lc = &st.sel[k]
		}
	}
	var c prometheus.Counter
	if lc != nil {
		c = lc.load(mSelections)
	}
	if c == nil {
		c = mSelections.WithLabelValues(rt.Tenant, app, zoneName, out.String())
		if lc != nil {
			lc.store(mSelections, c)
		}
	}
	c.Inc()
}

// UnmarshalCaddyfile sets up the policy. Syntax:
//
//	lb_policy neo_zone {
//	    zone            <zone or placeholder>  # default {neo.zone}
//	    zone_header                            # add Neo-Upstream-Zone to responses
//	    health_path     <path>                 # active checks on; default off
//	    health_interval <duration>             # default 5s
//	    health_timeout  <duration>             # default 2s
//	    health_status   <code>                 # default any 2xx
//	    health_fails    <n>                    # default 1
//	    health_passes   <n>                    # default 1
//	}
func (s *ZoneSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_zone", func(name string) error {
		if name == "zone_header" {
			s.ZoneHeader = true
			return cfblock.Flag(d)
		}
		v, err := cfblock.One(d)
		if err != nil {
			return err
		}
		switch name {
		case "zone":
			s.Zone = v
		case "health_path":
			s.HealthChecks.Path = v
		case "health_interval", "health_timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("neo_zone: %s: %v", name, err)
			}
			if name == "health_interval" {
				s.HealthChecks.Interval = caddy.Duration(dur)
			} else {
				s.HealthChecks.Timeout = caddy.Duration(dur)
			}
		case "health_status", "health_fails", "health_passes":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("neo_zone: %s: want a number, got %q", name, v)
			}
			switch name {
			case "health_status":
				s.HealthChecks.Status = n
			case "health_fails":
				s.HealthChecks.Fails = n
			default:
				s.HealthChecks.Passes = n
			}
		default:
			return cfblock.Unknown(d, "neo_zone", name)
		}
		return nil
	})
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ZoneSelection)(nil)
	_ caddy.CleanerUpper    = (*ZoneSelection)(nil)
	_ reverseproxy.Selector = (*ZoneSelection)(nil)
	_ caddyfile.Unmarshaler = (*ZoneSelection)(nil)
)
