// Package egress provides neo_egress, the egress gateway of one availability
// zone: an HTTP forward proxy that app replicas use through HTTP_PROXY and
// HTTPS_PROXY to reach external REST APIs from the zone's fixed source
// address.
//
// It identifies the calling tenant, stage and app (by replica address or by
// per-app proxy credentials), applies the tenant's allowlist of destination
// hosts and ports, refuses internal destinations on the address actually
// dialled (so DNS rebinding and redirects cannot reach them), limits each
// tenant's concurrent connections and bandwidth, and writes one log line per
// connection. See docs/egress.md.
package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"
)

func init() {
	caddy.RegisterModule(Gateway{})
}

// Gateway is the neo_egress handler. It serves forward-proxy requests
// (CONNECT over HTTP/1.1 and HTTP/2, absolute-form http:// over HTTP/1.1)
// and passes every other request to the next handler.
//
// Placeholders set for the rest of the route (for example access logs):
// {neo.egress.tenant}, {neo.egress.stage}, {neo.egress.app},
// {neo.egress.destination}, {neo.egress.verdict}.
type Gateway struct {
	// Zone is the availability zone this gateway serves; it labels logs and
	// metrics and keys the per-tenant limits. Required.
	Zone string `json:"zone,omitempty"`
	// SourceAddress is the local IP address every outbound connection is
	// bound to: the zone's fixed address that partners allowlist. Default:
	// none (the system picks).
	SourceAddress string `json:"source_address,omitempty"`
	// Callers map replica addresses to tenant, stage and app. Default: none.
	Callers []CallerAddress `json:"callers,omitempty"`
	// Credentials are per-app proxy credentials (Proxy-Authorization Basic),
	// for callers whose address is not enough. Default: none.
	Credentials []Credential `json:"credentials,omitempty"`
	// CallerSource names a registered CallerSource (RegisterCallerSource)
	// asked after the static callers and credentials, for example the
	// tenant registry. Default: none.
	CallerSource string `json:"caller_source,omitempty"`
	// Policies are the allowlists and limits per tenant, and optionally per
	// app of a tenant. A tenant without a policy may reach nothing.
	Policies []Policy `json:"policies,omitempty"`
	// InternalRanges are the CIDRs never dialled, whatever the policy.
	// Default: DefaultInternalRanges. Setting it replaces the default list.
	InternalRanges []string `json:"internal_ranges,omitempty"`
	// TreatAsExternal are CIDRs carved out of InternalRanges, for lab and
	// test setups where an "external" API lives on a private or loopback
	// address. Default: none. Never use in production.
	TreatAsExternal []string `json:"treat_as_external,omitempty"`
	// StaticHosts answer name lookups before DNS: name → addresses. For
	// tests and pinned partner addresses. Default: none.
	StaticHosts map[string][]string `json:"static_hosts,omitempty"`
	// MaxConnsPerTenant bounds each tenant's concurrent connections (tunnels
	// and in-flight http:// requests); a policy may override it. 0 means
	// unlimited. Default: 256.
	MaxConnsPerTenant int `json:"max_conns_per_tenant,omitempty"`
	// BytesPerSecondPerTenant bounds each tenant's bandwidth, both
	// directions together (token bucket); a policy may override it.
	// Default: 0 (unlimited).
	BytesPerSecondPerTenant int64 `json:"bytes_per_second_per_tenant,omitempty"`
	// ConnectTimeout bounds name resolution and the TCP connect to the
	// destination. Default: 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`
	// IdleTimeout closes a tunnel or exchange with no bytes either way for
	// that long, and bounds waiting for response headers. Default: 2m.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	logger   *zap.Logger
	guard    guard
	resolver resolver
	callers  CallerResolver
	policies map[string]*compiledPolicy
	source   netip.Addr
	dialer   *net.Dialer
	zone     *zoneState
	zoneKey  string

	transports *transportSet // per tenant: no connection reuse across tenants
}

type transportSet struct {
	mu sync.Mutex
	m  map[string]*http.Transport
}

// Policy is one tenant's (or one app's) allowlist and limits.
type Policy struct {
	// Tenant the policy applies to. Required.
	Tenant string `json:"tenant"`
	// App narrows the policy to one app of the tenant: its Allow list then
	// replaces the tenant's for that app. Default: empty (tenant-wide).
	App string `json:"app,omitempty"`
	// Allow lists destination patterns: "api.example.com", "*.example.com",
	// "*", "203.0.113.7", "203.0.113.0/24", "[2001:db8::/32]", each with an
	// optional ":port", ":lo-hi" or ":*" (default ports: 80 and 443).
	// Default: empty (nothing allowed).
	Allow []string `json:"allow,omitempty"`
	// MaxConns overrides MaxConnsPerTenant for this tenant (tenant-wide
	// policies only). Default: 0 (use MaxConnsPerTenant).
	MaxConns int `json:"max_conns,omitempty"`
	// BytesPerSecond overrides BytesPerSecondPerTenant for this tenant
	// (tenant-wide policies only). Default: 0 (use BytesPerSecondPerTenant).
	BytesPerSecond int64 `json:"bytes_per_second,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_egress",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// Provision compiles the configuration and fills defaults.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	// First, so that even a config refused below leaves the metrics visible
	// (Caddy's admin /metrics serves the registry of the last load attempt).
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if g.MaxConnsPerTenant == 0 {
		g.MaxConnsPerTenant = 256
	}
	if g.ConnectTimeout == 0 {
		g.ConnectTimeout = caddy.Duration(10 * time.Second)
	}
	if g.IdleTimeout == 0 {
		g.IdleTimeout = caddy.Duration(2 * time.Minute)
	}
	if err := g.compile(); err != nil {
		return err
	}
	if g.CallerSource != "" {
		src, ok := lookupCallerSource(g.CallerSource)
		if !ok {
			return fmt.Errorf("caller_source: no caller source named %q", g.CallerSource)
		}
		r, err := src(ctx)
		if err != nil {
			return fmt.Errorf("caller_source %q: %w", g.CallerSource, err)
		}
		g.callers = chain{g.callers, r}
	}
	g.transports = &transportSet{}
	g.zoneKey = "neo_egress:" + g.Zone
	v, _, err := zoneStates.LoadOrNew(g.zoneKey, func() (caddy.Destructor, error) {
		return &zoneState{tenants: map[string]*tenantState{}}, nil
	})
	if err != nil {
		return err
	}
	g.zone = v.(*zoneState)
	return nil
}

// compile checks the configuration and builds the runtime state; it is
// shared by Provision and Validate so that errors name the field either way.
func (g *Gateway) compile() error {
	if g.Zone == "" {
		return errors.New("zone: required")
	}
	g.source = netip.Addr{}
	if g.SourceAddress != "" {
		a, err := netip.ParseAddr(g.SourceAddress)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("source_address: want an IP address, got %q", g.SourceAddress)
		}
		g.source = a.Unmap()
	}
	sc, err := NewStaticCallers(g.Callers, g.Credentials)
	if err != nil {
		return err
	}
	g.callers = sc
	internal := g.InternalRanges
	if len(internal) == 0 {
		internal = DefaultInternalRanges
	}
	if g.guard.internal, err = parsePrefixes("internal_ranges", internal); err != nil {
		return err
	}
	if g.guard.external, err = parsePrefixes("treat_as_external", g.TreatAsExternal); err != nil {
		return err
	}
	g.resolver = resolver{static: map[string][]netip.Addr{}, dns: net.DefaultResolver}
	for name, addrs := range g.StaticHosts {
		t, err := ParseTarget(name, 1)
		if err != nil || t.IsIP() || strings.Contains(name, ":") {
			return fmt.Errorf("static_hosts: %q is not a host name", name)
		}
		if len(addrs) == 0 {
			return fmt.Errorf("static_hosts[%q]: no addresses", name)
		}
		for _, s := range addrs {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return fmt.Errorf("static_hosts[%q]: %q is not an IP address", name, s)
			}
			g.resolver.static[t.Host] = append(g.resolver.static[t.Host], a)
		}
	}
	if g.MaxConnsPerTenant < 0 {
		return fmt.Errorf("max_conns_per_tenant: must not be negative, got %d", g.MaxConnsPerTenant)
	}
	if g.BytesPerSecondPerTenant < 0 {
		return fmt.Errorf("bytes_per_second_per_tenant: must not be negative, got %d", g.BytesPerSecondPerTenant)
	}
	if g.ConnectTimeout < 0 {
		return fmt.Errorf("connect_timeout: must not be negative")
	}
	if g.IdleTimeout < 0 {
		return fmt.Errorf("idle_timeout: must not be negative")
	}
	g.policies = map[string]*compiledPolicy{}
	seen := map[[2]string]bool{}
	for i, p := range g.Policies {
		if p.Tenant == "" {
			return fmt.Errorf("policies[%d].tenant: required", i)
		}
		key := [2]string{p.Tenant, p.App}
		if seen[key] {
			return fmt.Errorf("policies[%d]: a second policy for tenant %q app %q", i, p.Tenant, p.App)
		}
		seen[key] = true
		if p.App != "" && (p.MaxConns != 0 || p.BytesPerSecond != 0) {
			return fmt.Errorf("policies[%d]: max_conns and bytes_per_second are per tenant, not per app (app %q)", i, p.App)
		}
		if p.MaxConns < 0 {
			return fmt.Errorf("policies[%d].max_conns: must not be negative", i)
		}
		if p.BytesPerSecond < 0 {
			return fmt.Errorf("policies[%d].bytes_per_second: must not be negative", i)
		}
		var rules []allowRule
		for j, a := range p.Allow {
			r, err := parseAllow(a)
			if err != nil {
				return fmt.Errorf("policies[%d].allow[%d]: %w", i, j, err)
			}
			rules = append(rules, r)
		}
		cp := g.policies[p.Tenant]
		if cp == nil {
			cp = &compiledPolicy{apps: map[string][]allowRule{}}
			g.policies[p.Tenant] = cp
		}
		if p.App == "" {
			cp.allow = rules
			cp.maxConns = p.MaxConns
			cp.bytesPerSecond = p.BytesPerSecond
		} else {
			cp.apps[p.App] = rules
		}
	}
	var local net.Addr
	if g.source.IsValid() {
		local = &net.TCPAddr{IP: g.source.AsSlice()}
	}
	g.dialer = &net.Dialer{
		Timeout:   time.Duration(g.ConnectTimeout),
		LocalAddr: local,
		Control:   g.guard.control,
		KeepAlive: 30 * time.Second,
	}
	return nil
}

// Validate checks the configuration.
func (g *Gateway) Validate() error {
	if g.logger == nil { // not provisioned (caddy validate provisions, but be safe)
		return g.compile()
	}
	return nil
}

// Cleanup releases the zone state and idle upstream connections. Tunnels
// in progress are left to finish (or to time out) across reloads.
func (g *Gateway) Cleanup() error {
	if ts := g.transports; ts != nil {
		ts.mu.Lock()
		for _, t := range ts.m {
			t.CloseIdleConnections()
		}
		ts.m = nil
		ts.mu.Unlock()
	}
	if g.zone != nil {
		_, err := zoneStates.Delete(g.zoneKey)
		return err
	}
	return nil
}

// limits returns the connection limit and bandwidth of tenant.
func (g *Gateway) limits(tenant string) (int, int64) {
	maxConns, bps := g.MaxConnsPerTenant, g.BytesPerSecondPerTenant
	if p := g.policies[tenant]; p != nil {
		if p.maxConns != 0 {
			maxConns = p.maxConns
		}
		if p.bytesPerSecond != 0 {
			bps = p.bytesPerSecond
		}
	}
	return maxConns, bps
}

// record is what one connection's log line and metrics carry.
type record struct {
	start       time.Time
	kind        string // "connect" or "http"
	caller      Caller
	remote      string
	destination string
	dialed      string
	verdict     string
	reason      string
	status      int
	up, down    atomic.Int64
	idled       atomic.Bool // set by the idle watch's goroutine
}

func (g *Gateway) finish(rec *record) {
	tenant := rec.caller.Tenant
	if tenant == "" {
		tenant = "unknown"
	}
	metrics.conns.WithLabelValues(g.Zone, tenant, rec.kind, rec.verdict).Inc()
	up, down := rec.up.Load(), rec.down.Load()
	if up > 0 {
		metrics.bytes.WithLabelValues(g.Zone, tenant, "up").Add(float64(up))
	}
	if down > 0 {
		metrics.bytes.WithLabelValues(g.Zone, tenant, "down").Add(float64(down))
	}
	d := time.Since(rec.start)
	if rec.idled.Load() && rec.reason == "" {
		rec.reason = "idle timeout"
	}
	if rec.verdict == verdictAllowed {
		metrics.duration.WithLabelValues(g.Zone, tenant, rec.kind).Observe(d.Seconds())
	}
	level := zapcore.InfoLevel
	if rec.verdict != verdictAllowed {
		level = zapcore.WarnLevel
	}
	if ce := g.logger.Check(level, "egress connection"); ce != nil {
		ce.Write(
			zap.String("zone", g.Zone),
			zap.String("tenant", rec.caller.Tenant),
			zap.String("stage", rec.caller.Stage),
			zap.String("app", rec.caller.App),
			zap.String("caller_via", rec.caller.Via),
			zap.String("remote", rec.remote),
			zap.String("kind", rec.kind),
			zap.String("destination", rec.destination),
			zap.String("dialed", rec.dialed),
			zap.String("verdict", rec.verdict),
			zap.String("reason", rec.reason),
			zap.Int("status", rec.status),
			zap.Int64("bytes_up", up),
			zap.Int64("bytes_down", down),
			zap.Duration("duration", d),
		)
	}
}

// isProxyRequest reports whether r asks the gateway to proxy: CONNECT, or an
// absolute-form request line (HTTP/1.x only; in HTTP/2 every request carries
// an authority, so only CONNECT is a proxy request there).
func isProxyRequest(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	return r.ProtoMajor == 1 && r.URL.IsAbs() && !strings.HasPrefix(r.RequestURI, "/")
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !isProxyRequest(r) {
		return next.ServeHTTP(w, r)
	}
	rec := &record{start: time.Now(), kind: "http", remote: r.RemoteAddr, verdict: verdictAllowed}
	if r.Method == http.MethodConnect {
		rec.kind = "connect"
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	defer func() {
		if repl != nil {
			repl.Set("neo.egress.tenant", rec.caller.Tenant)
			repl.Set("neo.egress.stage", rec.caller.Stage)
			repl.Set("neo.egress.app", rec.caller.App)
			repl.Set("neo.egress.destination", rec.destination)
			repl.Set("neo.egress.verdict", rec.verdict)
		}
		g.finish(rec)
	}()
	err := g.serve(w, r, rec)
	if err == nil {
		return nil
	}
	var d *denial
	if !errors.As(err, &d) {
		d = &denial{status: http.StatusBadGateway, verdict: verdictUpstream, reason: err.Error()}
	}
	rec.verdict, rec.reason, rec.status = d.verdict, d.reason, d.status
	if d.status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="neo-egress", charset="UTF-8"`)
	}
	return caddyhttp.Error(d.status, d)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, rec *record) error {
	caller, err := g.identify(r)
	rec.caller = caller
	if err != nil {
		return err
	}
	var target Target
	if r.Method == http.MethodConnect && r.URL.Path != "" {
		// Extended CONNECT (RFC 8441, :protocol and :path) is not a tunnel request.
		err = fmt.Errorf("%w: CONNECT with a path (extended CONNECT) is not supported", errBadTarget)
	} else if r.Method == http.MethodConnect {
		target, err = ParseTarget(r.Host, 0)
	} else if r.URL.Scheme != "http" {
		err = fmt.Errorf("%w: scheme %q: use CONNECT for https", errBadTarget, r.URL.Scheme)
	} else {
		target, err = ParseTarget(r.URL.Host, 80)
	}
	if err != nil {
		rec.destination = truncate(r.Host, 300)
		return &denial{status: http.StatusBadRequest, verdict: verdictBadRequest, reason: err.Error()}
	}
	rec.destination = target.String()
	if !g.policies[caller.Tenant].allowed(caller.App, target) {
		return forbidden(verdictPolicy, "%s is not in the allowlist of tenant %q app %q", target, caller.Tenant, caller.App)
	}
	maxConns, bps := g.limits(caller.Tenant)
	ts := g.zone.tenant(caller.Tenant, bps)
	if !ts.tryAcquire(maxConns) {
		return &denial{status: http.StatusTooManyRequests, verdict: verdictLimited, reason: fmt.Sprintf("tenant %q at its limit of %d connections", caller.Tenant, maxConns)}
	}
	defer ts.release()
	active := metrics.active.WithLabelValues(g.Zone, caller.Tenant)
	active.Inc()
	defer active.Dec()
	if r.Method == http.MethodConnect {
		return g.tunnel(w, r, rec, target, ts.getLimiter())
	}
	return g.forward(w, r, rec, target, ts.getLimiter())
}

// identify finds the caller: by Proxy-Authorization if present, else by the
// connection's peer address (never by forwarded headers).
func (g *Gateway) identify(r *http.Request) (Caller, error) {
	var byAddr Caller
	var addrOK bool
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		byAddr, addrOK = g.callers.CallerByAddress(ap.Addr())
	}
	if h := r.Header.Get("Proxy-Authorization"); h != "" {
		user, pass, ok := ParseProxyAuthorization(h)
		if !ok {
			return byAddr, &denial{status: http.StatusProxyAuthRequired, verdict: verdictUnknown, reason: "malformed Proxy-Authorization"}
		}
		c, ok := g.callers.CallerByCredentials(user, pass)
		if !ok {
			return Caller{}, &denial{status: http.StatusProxyAuthRequired, verdict: verdictUnknown, reason: fmt.Sprintf("bad proxy credentials for user %q", truncate(user, 64))}
		}
		if addrOK && byAddr.Tenant != c.Tenant {
			return c, forbidden(verdictUnknown, "credentials of tenant %q from an address of tenant %q", c.Tenant, byAddr.Tenant)
		}
		return c, nil
	}
	if !addrOK {
		return Caller{}, &denial{status: http.StatusProxyAuthRequired, verdict: verdictUnknown, reason: "unknown caller address " + r.RemoteAddr}
	}
	return byAddr, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// dial resolves t, drops internal addresses (and those of the other family
// than the source address), and connects to the first remaining address that
// answers. The dialer's Control function checks the address once more.
func (g *Gateway) dial(ctx context.Context, t Target) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(g.ConnectTimeout))
	defer cancel()
	var addrs []netip.Addr
	if t.IsIP() {
		addrs = []netip.Addr{t.IP}
	} else {
		var err error
		if addrs, err = g.resolver.lookup(ctx, t.Host); err != nil {
			return nil, err
		}
	}
	var ok []netip.Addr
	var why string
	for _, a := range addrs {
		a = a.Unmap()
		if bad, reason := g.guard.internalAddr(a); bad {
			why = fmt.Sprintf("%s resolves to %s, an %s", t.Host, a, reason)
			continue
		}
		if g.source.IsValid() && a.Is4() != g.source.Is4() {
			continue
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		if why != "" {
			return nil, forbidden(verdictInternal, "%s", why)
		}
		return nil, &denial{status: http.StatusBadGateway, verdict: verdictUnresolvable, reason: "no usable address for " + t.Host}
	}
	var lastErr error
	for _, a := range ok {
		c, err := g.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, t.Port).String())
		if err == nil {
			return c, nil
		}
		var d *denial
		if errors.As(err, &d) {
			return nil, d
		}
		lastErr = err
	}
	status := http.StatusBadGateway
	if errors.Is(lastErr, context.DeadlineExceeded) || isTimeout(lastErr) {
		status = http.StatusGatewayTimeout
	}
	return nil, &denial{status: status, verdict: verdictUpstream, reason: fmt.Sprintf("connecting to %s: %v", t, lastErr)}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tunnel serves CONNECT: dial, answer 200, then relay bytes both ways.
func (g *Gateway) tunnel(w http.ResponseWriter, r *http.Request, rec *record, t Target, lim *rate.Limiter) error {
	up, err := g.dial(r.Context(), t)
	if err != nil {
		return err
	}
	rec.dialed = up.RemoteAddr().String()
	rec.status = http.StatusOK
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var down io.ReadWriteCloser
	var flush func()
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		conn, brw, err := rc.Hijack()
		if err != nil {
			up.Close()
			return &denial{status: http.StatusInternalServerError, verdict: verdictUpstream, reason: "hijack: " + err.Error()}
		}
		_ = conn.SetDeadline(time.Time{}) // the idle watch governs from here
		if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			conn.Close()
			up.Close()
			return nil
		}
		down = &bufferedConn{Conn: conn, r: brw.Reader}
	} else {
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			up.Close()
			return nil
		}
		down = &streamConn{r: r.Body, w: w}
		flush = func() { _ = rc.Flush() }
	}
	closeAll := func() { cancel(); up.Close(); down.Close() }
	idle := newIdleWatch(time.Duration(g.IdleTimeout), func() {
		rec.idled.Store(true)
		closeAll()
	})
	defer idle.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = meteredCopy(ctx, up, down, lim, &rec.up, idle.touch, nil)
		// The caller finished sending: pass the half-close on.
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_ = meteredCopy(ctx, down, up, lim, &rec.down, idle.touch, flush)
	closeAll()
	<-done
	return nil
}

// bufferedConn reads what the HTTP server already buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// streamConn is an HTTP/2 CONNECT stream as a connection.
type streamConn struct {
	r io.ReadCloser
	w io.Writer
}

func (s *streamConn) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *streamConn) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *streamConn) Close() error                { return s.r.Close() }

// hopHeaders are removed in both directions (RFC 9110 7.6.1), with
// Proxy-Authorization so the caller's credentials never leave the gateway.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// forward serves an absolute-form http:// request. Redirects are passed to
// the caller, never followed.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, rec *record, t Target, lim *rate.Limiter) error {
	if r.Header.Get("Upgrade") != "" {
		return &denial{status: http.StatusBadRequest, verdict: verdictBadRequest, reason: "protocol upgrades over http:// are not relayed; use CONNECT"}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	idle := newIdleWatch(time.Duration(g.IdleTimeout), func() {
		rec.idled.Store(true)
		cancel()
	})
	defer idle.stop()
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = t.String()
	out.Host = r.URL.Host
	// r.Clone copied the header map; edit the copy.
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // do not add Go's
	}
	if r.ContentLength == 0 {
		out.Body = nil
	} else {
		out.Body = &meteredReader{ctx: ctx, r: r.Body, lim: lim, n: &rec.up, touch: idle.touch}
	}
	var dialed atomic.Value
	out = out.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { dialed.Store(info.Conn.RemoteAddr().String()) },
	}))
	resp, err := g.transport(rec.caller.Tenant).RoundTrip(out)
	if d, ok := dialed.Load().(string); ok {
		rec.dialed = d
	}
	if err != nil {
		var d *denial
		if errors.As(err, &d) {
			return d
		}
		if rec.idled.Load() {
			return &denial{status: http.StatusGatewayTimeout, verdict: verdictUpstream, reason: "idle timeout waiting for " + t.String()}
		}
		return &denial{status: http.StatusBadGateway, verdict: verdictUpstream, reason: err.Error()}
	}
	defer resp.Body.Close()
	idle.touch()
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	rec.status = resp.StatusCode
	var flush func()
	if resp.ContentLength < 0 {
		rc := http.NewResponseController(w)
		flush = func() { _ = rc.Flush() }
	}
	if err := meteredCopy(ctx, w, resp.Body, lim, &rec.down, idle.touch, flush); err != nil {
		rec.reason = "relaying response: " + err.Error()
		// The status line is sent; abort so the caller sees a broken body.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// transport returns the tenant's upstream transport: connections are pooled
// per tenant, never shared between tenants.
func (g *Gateway) transport(tenant string) *http.Transport {
	ts := g.transports
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[string]*http.Transport{}
	}
	tr, ok := ts.m[tenant]
	if !ok {
		tr = &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				t, err := ParseTarget(addr, 0)
				if err != nil {
					return nil, err
				}
				return g.dial(ctx, t)
			},
			Proxy:                 nil,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: time.Duration(g.IdleTimeout),
			DisableCompression:    true,
		}
		ts.m[tenant] = tr
	}
	return tr
}

type meteredReader struct {
	ctx   context.Context
	r     io.ReadCloser
	lim   *rate.Limiter
	n     *atomic.Int64
	touch func()
}

func (m *meteredReader) Read(p []byte) (int, error) {
	if m.lim != nil && len(p) > m.lim.Burst() {
		p = p[:m.lim.Burst()]
	}
	n, err := m.r.Read(p)
	if n > 0 {
		if werr := waitN(m.ctx, m.lim, n); werr != nil {
			return 0, werr
		}
		m.n.Add(int64(n))
		m.touch()
	}
	return n, err
}

func (m *meteredReader) Close() error { return m.r.Close() }

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.Validator             = (*Gateway)(nil)
	_ caddy.CleanerUpper          = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
	_ CallerResolver              = (*StaticCallers)(nil)
	_ CallerResolver              = chain(nil)
)
