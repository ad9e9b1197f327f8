package neo

import (
	"github.com/projectneo/caddy-neo/modules/zonelb"

	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(RouteHandler{})
}

// RouteHandler is the neo_route handler: it resolves each request through the
// registry of the `neo` app to a tenant, stage and app (Runtime hosts and
// custom domains) or to a tenant and platform service (Platform hosts), then
// calls the next handler (usually reverse_proxy with `dynamic neo`).
//
// Host: taken only from the Host header / HTTP/2 :authority, lowercased,
// without port and without one trailing dot. X-Forwarded-Host is used only
// when trust_forwarded_host is set and Caddy considers the peer a trusted
// proxy (the server's trusted_proxies).
//
// Path: see the canonical path rule in docs/registry.md ("The canonical path rule") (rule in resolve.go).
//
// Unknown host, tenant, stage, app or service: one generic 404 (an error
// with status 404, so handle_errors applies; with no handle_errors the
// response has an empty body and the same headers whatever was unknown).
// Paths breaking the rule: 400.
//
// Headers: every client-sent header whose name begins with `Neo-` or `Neo_`
// (any case) is removed; the trusted `Neo-Tenant`, `Neo-Stage` and
// `Neo-App` (Runtime) or `Neo-Tenant` and `Neo-Service` (Platform) are set.
// Behind a stage gateway (SubjectRoute), `Neo-Caller` is kept, and the
// request is served only if it resolves to its subject's tenant, stage and
// app (else 404, reason subject_mismatch, logged as a warning).
//
// Placeholders: `{neo.tenant}`, `{neo.stage}`, `{neo.app}`, `{neo.service}`,
// `{neo.zone}` (the route's zone: the one its NATS subject addressed behind a stage gateway, else this node's), `{neo.host}` (the normalised host) and
// `{neo.public}` ("true" for a public app, "false" otherwise) and
// `{neo.protocol}` ("h2c" for an app declared `protocol h2c`, else "h1").
//
// Go API: RouteFromRequest returns the resolved Route to later handlers and
// upstream sources.
type RouteHandler struct {
	// TrustForwardedHost makes the handler take the host from the first
	// X-Forwarded-Host value when the request comes from a trusted proxy
	// (see the server's trusted_proxies). Default: false.
	TrustForwardedHost bool `json:"trust_forwarded_host,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RouteHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_route",
		New: func() caddy.Module { return new(RouteHandler) },
	}
}

// Provision finds the neo app.
func (h *RouteHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	a, err := neoApp(ctx, "neo_route")
	if err != nil {
		return err
	}
	h.app = a
	return nil
}

// neoApp returns the config's neo app for module user. A missing app is
// named as such; an app that failed to load returns its own error (naming
// its field), not a chain through the module that asked for it.
func neoApp(ctx caddy.Context, user string) (*App, error) {
	a, err := ctx.AppIfConfigured("neo")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("%s needs the neo app (global option neo)", user)
	}
	if err != nil {
		return nil, err
	}
	return a.(*App), nil
}

// Route is a resolved request. It is stored in the request and read with
// RouteFromRequest. Values are immutable.
type Route struct {
	// Host is the normalised host the request was resolved from.
	Host string
	// Tenant is the tenant's name.
	Tenant string
	// Stage is the stage name (empty for platform requests).
	Stage string
	// App is the app name (empty for platform requests).
	App string
	// Service is the platform service name (empty for app requests).
	Service string
	// Zone is the request's zone: the zone its NATS subject addressed
	// behind a stage gateway, else this node's zone. lb_policy neo_zone
	// prefers its replicas.
	Zone string
	// Replicas are the app's replicas in the stage or the service's replicas,
	// from the registry snapshot the request was resolved with. Shared: do
	// not modify.
	Replicas []Replica
	// Snapshot is the registry version the request was resolved with.
	Snapshot *Snapshot
	// Pool is the zone-aware rotation over Replicas (same order), private
	// to this tenant's app and stage (or the service).
	Pool *zonelb.Pool
	// Public: the app is public (anonymous users allowed). Always false for
	// platform services, which require a signed-in member.
	Public bool
	// H2C: the app's replicas speak h2c (`{neo.protocol}` is "h2c").
	H2C   bool
	stats *poolStats
	// upstream and upstreamZone are the replica lb_policy neo_zone chose
	// last for this request, and its zone (for neo_access).
	upstream, upstreamZone string
}

// PoolKey identifies the replica pool of the route: tenant, stage and app, or
// the service. Pools of different tenants never share a key.
func (r *Route) PoolKey() string {
	if r.Service != "" {
		return "service/" + r.Service
	}
	return "app/" + r.Tenant + "/" + r.Stage + "/" + r.App
}

// placeholder provides {neo.tenant}, {neo.stage}, {neo.app}, {neo.service},
// {neo.zone}, {neo.host}, {neo.public} ("true" for a public app) and
// {neo.protocol} ("h2c" for an app whose replicas speak h2c, else "h1").
func (r *Route) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, "neo.")
	if !ok {
		return nil, false
	}
	switch name {
	case "tenant":
		return r.Tenant, true
	case "stage":
		return r.Stage, true
	case "app":
		return r.App, true
	case "service":
		return r.Service, true
	case "zone":
		return r.Zone, true
	case "host":
		return r.Host, true
	case "public":
		if r.Public {
			return "true", true
		}
		return "false", true
	case "protocol":
		if r.H2C {
			return ProtocolH2C, true
		}
		return ProtocolH1, true
	}
	return nil, false
}

const routeVar = "neo.route"

// RouteFromRequest returns the route neo_route resolved for r, if any.
func RouteFromRequest(r *http.Request) (*Route, bool) {
	rt, ok := caddyhttp.GetVar(r.Context(), routeVar).(*Route)
	return rt, ok && rt != nil
}

func (h *RouteHandler) miss(r *http.Request, host, reason, tenant string) error {
	h.app.metrics.miss(reason)
	if c := h.logger.Check(zapcore.DebugLevel, "request not routed"); c != nil {
		c.Write(zap.String("host", host), zap.String("tenant", tenant), zap.String("reason", reason), zap.String("path", r.URL.Path))
	}
	return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("neo: not routed (%s)", reason))
}

// senderHeaders are the Neo-* headers a request that arrived over NATS keeps
// on a gateway: the caller (a platform listener's Neo-Caller) and the
// signed-in user neo_identity admitted at the edge.
var senderHeaders = [...]string{"Neo-Caller", "Neo-User", "Neo-User-Roles", "Neo-Realm"}

// stripNeoHeaders removes every header whose name begins with neo- or neo_.
func stripNeoHeaders(h http.Header) {
	for k := range h {
		if len(k) >= 4 && (k[3] == '-' || k[3] == '_') && strings.EqualFold(k[:3], "neo") {
			delete(h, k)
		}
	}
}

// ServeHTTP resolves the request and calls next.
func (h *RouteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	sr, viaGateway := SubjectRouteFrom(r.Context())
	var kept [len(senderHeaders)][]string
	if viaGateway {
		// The sender set these (the edge strips clients' Neo-* headers
		// with its own neo_route before neo_identity sets the user's; the
		// platform listener strips its services' and sets Neo-Caller), and
		// only edges and platform listeners may publish requests: they
		// are kept.
		for i, k := range senderHeaders {
			kept[i] = r.Header[k]
		}
	}
	stripNeoHeaders(r.Header)
	for i, k := range senderHeaders {
		if len(kept[i]) > 0 {
			r.Header[k] = kept[i]
		}
	}
	// The identity's cookies never reach an upstream: neo_signin took
	// them already where it runs; on a host without it they were not set
	// by this platform (__Host- cookies are host-only), and the edge's WAF
	// does not inspect them.
	TakeIdentityCookies(r.Header, nil)
	rawHost := r.Host
	if h.TrustForwardedHost {
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
			if xf := r.Header.Get("X-Forwarded-Host"); xf != "" {
				rawHost, _, _ = strings.Cut(xf, ",")
				rawHost = strings.TrimSpace(rawHost)
			}
		}
	}
	host, ok := NormalizeHost(rawHost)
	if !ok {
		return h.miss(r, rawHost, MissHost, "")
	}
	path, changed, ok := CanonicalPath(r)
	if !ok {
		h.app.metrics.miss("bad_path")
		if c := h.logger.Check(zapcore.DebugLevel, "request target refused"); c != nil {
			c.Write(zap.String("host", host), zap.String("uri", r.RequestURI))
		}
		return caddyhttp.Error(http.StatusBadRequest, errBadPath)
	}
	snap := h.app.reg.Snapshot()
	res, miss := snap.Resolve(host, path)
	if miss != "" {
		tenant := ""
		if m := snap.resolveHost(host); m.t != nil {
			tenant = m.t.Name
		}
		return h.miss(r, host, miss, tenant)
	}
	if viaGateway && !subjectMatches(sr, res) {
		h.app.metrics.miss(MissSubject)
		resolved := res.Tenant.Name + "/" + res.Stage + "/"
		if res.App != nil {
			resolved += res.App.Name
		} else if res.Service != nil {
			resolved += "service:" + res.Service.Name
		}
		h.logger.Warn("request refused: its host and path name another route than its NATS subject",
			zap.String("tenant", sr.Tenant), zap.String("stage", sr.Stage), zap.String("app", sr.App),
			zap.String("host", host), zap.String("resolved", resolved), zap.String("reason", MissSubject))
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("neo: not routed (%s)", MissSubject))
	}
	if res.Redirect != "" {
		reps, pool, st := res.target(true)
		// the route, for neo_access: a redirect of the app's
		caddyhttp.SetVar(r.Context(), routeVar, &Route{Host: host, Tenant: res.Tenant.Name, Stage: res.Stage, App: res.App.Name,
			Zone: snap.g.zone, Replicas: reps, Pool: pool, Snapshot: snap, Public: res.App.Public, stats: st})
		w.Header().Set("Location", res.Redirect)
		w.WriteHeader(http.StatusMovedPermanently)
		return nil
	}
	if res.Rewrite != "" {
		path, changed = res.Rewrite, true
	}
	if changed || r.URL.RawPath != "" {
		// Forward exactly the resolved path, in Go's canonical encoding.
		r.URL.Path = path
		r.URL.RawPath = ""
		r.RequestURI = r.URL.RequestURI()
	}
	reps, pool, st := res.target(true)
	rt := &Route{Host: host, Tenant: res.Tenant.Name, Stage: res.Stage, Zone: snap.g.zone, Replicas: reps, Pool: pool, Snapshot: snap, stats: st}
	if viaGateway && sr.Zone != "" {
		rt.Zone = sr.Zone // the route carries the zone its subject named
	}
	// One backing array for the trusted headers; each value slice is capped
	// so that an append by a later handler cannot write into its neighbour.
	vals := make([]string, 3)
	vals[0] = rt.Tenant
	r.Header["Neo-Tenant"] = vals[0:1:1]
	if res.App != nil {
		rt.App = res.App.Name
		rt.Public = res.App.Public
		rt.H2C = res.App.H2C
		vals[1], vals[2] = rt.Stage, rt.App
		r.Header["Neo-Stage"] = vals[1:2:2]
		r.Header["Neo-App"] = vals[2:3:3]
	} else {
		rt.Service = res.Service.Name
		vals[1] = rt.Service
		r.Header["Neo-Service"] = vals[1:2:2]
	}
	caddyhttp.SetVar(r.Context(), routeVar, rt)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(rt.placeholder)
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RouteHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*RouteHandler)(nil)
)
