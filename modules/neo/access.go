package neo

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	caddy.RegisterModule(AccessHandler{})
	httpcaddyfile.RegisterHandlerDirective("neo_access", cfblock.Handler[AccessHandler])
	httpcaddyfile.RegisterDirectiveOrder("neo_access", httpcaddyfile.Before, "tracing")
}

// Response headers by which a stage gateway tells the edge which replica
// served a request sent over NATS, and in which zone (caddyfiles/stage.Caddyfile).
// neo_access reads and removes them: they never reach the client.
const (
	HeaderServedReplica = "Neo-Served-Replica"
	HeaderServedZone    = "Neo-Served-Zone"
)

// AccessHandler is the neo_access handler, first on the edge route
// (snippets/edge.caddy): it observes every request once, whatever answers
// it (a rate limit, the WAF, identity, routing or the upstream), after the
// response:
//
//   - per-tenant metrics: caddy_neo_requests_total{tenant,stage,app,code_class}
//     for Runtime requests, caddy_neo_platform_requests_total{tenant,service,code_class}
//     for Platform requests, caddy_neo_request_duration_seconds{tenant,code_class}
//     (a histogram); code_class is 1xx to 5xx. A request that never reached
//     an app (stopped by the WAF or a rate limit, or not routed) counts for
//     the tenant its host belongs to, with app or service "" (and tenant ""
//     for hosts of no tenant). Without the tenant label when the registry
//     sets metrics_no_tenant_label.
//   - fields of the request's access log line (the site's `log`): tenant,
//     stage, app or service, zone and replica (the replica that served it,
//     and its zone), waf (the WAF's outcome, {neo.waf.outcome}) and waf_rules
//     (the matched rule ids, {neo.waf.rules}), each only when known.
//
// A stage gateway reports the replica and its zone in the response headers
// Neo-Served-Replica and Neo-Served-Zone; neo_access takes them and removes
// them from the response. Behind a stage gateway (requests that arrived over
// NATS) it counts nothing: the edge counted the request. Without a neo app
// in the config, no request has a tenant.
type AccessHandler struct {
	app     *App
	metrics *metrics
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AccessHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_access",
		New: func() caddy.Module { return new(AccessHandler) },
	}
}

// Provision finds the neo app, if the config has one.
func (h *AccessHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	a, err := ctx.AppIfConfigured("neo")
	switch {
	case errors.Is(err, caddy.ErrNotConfigured):
		if h.metrics, err = newMetrics(ctx, false); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		h.app = a.(*App)
		h.metrics = h.app.metrics
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler: `neo_access` takes no arguments
// and no block.
func (h *AccessHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_access", func(name string) error {
		return cfblock.Unknown(d, "neo_access", name)
	})
}

const accessVar = "neo.access"

// ReportWAF records the WAF's outcome and the ids of the rules that matched
// (space-separated) for the request's access line, when neo_access
// observes the request. The WAF handler (neo_waf) calls it.
func ReportWAF(r *http.Request, outcome, rules string) {
	if rec, ok := caddyhttp.GetVar(r.Context(), accessVar).(*accessRecord); ok {
		rec.waf, rec.wafRules = outcome, rules
	}
}

// accessRecord is one request's observation: the response writer the later
// handlers get, and the access log line's fields.
type accessRecord struct {
	http.ResponseWriter
	status int

	tenant, stage, app, service string
	zone, replica               string
	waf, wafRules               string
}

func (rec *accessRecord) WriteHeader(code int) {
	if rec.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rec.status = code
		rec.takeUpstream()
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *accessRecord) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
		rec.takeUpstream()
	}
	return rec.ResponseWriter.Write(b)
}

// takeUpstream reads and removes a stage gateway's report before the head
// goes out.
func (rec *accessRecord) takeUpstream() {
	h := rec.ResponseWriter.Header()
	if v, ok := h[HeaderServedReplica]; ok {
		if len(v) > 0 {
			rec.replica = v[0]
		}
		delete(h, HeaderServedReplica)
	}
	if v, ok := h[HeaderServedZone]; ok {
		if len(v) > 0 {
			rec.zone = v[0]
		}
		delete(h, HeaderServedZone)
	}
}

func (rec *accessRecord) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *accessRecord) FlushError() error {
	return http.NewResponseController(rec.ResponseWriter).Flush()
}

func (rec *accessRecord) Flush() { _ = rec.FlushError() }

func (rec *accessRecord) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(rec.ResponseWriter).Hijack()
}

// MarshalLogObject writes the access line's fields (inline, beside Caddy's).
func (rec *accessRecord) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, f := range [...]struct{ k, v string }{
		{"tenant", rec.tenant}, {"stage", rec.stage}, {"app", rec.app}, {"service", rec.service},
		{"zone", rec.zone}, {"replica", rec.replica}, {"waf", rec.waf}, {"waf_rules", rec.wafRules},
	} {
		if f.v != "" {
			enc.AddString(f.k, f.v)
		}
	}
	return nil
}

// ServeHTTP observes the request and the response.
func (h *AccessHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if _, viaGateway := SubjectRouteFrom(r.Context()); viaGateway {
		return next.ServeHTTP(w, r)
	}
	start := time.Now()
	rec := &accessRecord{ResponseWriter: w}
	caddyhttp.SetVar(r.Context(), accessVar, rec)
	err := next.ServeHTTP(rec, r)
	status := rec.status
	if err != nil && status == 0 {
		status = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	var st *poolStats
	if rt, ok := RouteFromRequest(r); ok {
		rec.tenant, rec.stage, rec.app, rec.service, st = rt.Tenant, rt.Stage, rt.App, rt.Service, rt.stats
		if rt.upstream != "" {
			// a replica the edge chose itself (lb_policy neo_zone); behind
			// a stage gateway, the gateway's report (takeUpstream)
			rec.zone, rec.replica = rt.upstreamZone, rt.upstream
		}
		if rt.Service != "" {
			st = nil // a service's pool serves every tenant
		}
	} else if host, ok := NormalizeHost(r.Host); ok && h.app != nil {
		snap := h.app.reg.Snapshot()
		if m := snap.resolveHost(host); m.t != nil {
			rec.tenant = m.t.Name
			if m.stage >= 0 {
				rec.stage = snap.g.stages.names[m.stage]
			}
		}
	}
	h.metrics.observe(st, rec.tenant, rec.stage, rec.app, rec.service, status, time.Since(start))
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.Inline(rec))
	}
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AccessHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AccessHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AccessHandler)(nil)
	_ http.Flusher                = (*accessRecord)(nil)
	_ http.Hijacker               = (*accessRecord)(nil)
	_ zapcore.ObjectMarshaler     = (*accessRecord)(nil)
)
