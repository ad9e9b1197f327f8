// Package edgewaf provides neo_waf, the edge's WAF handler: Coraza
// (coraza-caddy's http.handlers.waf, with the OWASP CRS) wrapped so that
// streamed responses keep streaming.
//
// coraza-caddy v2.1.0's response writer swallows Flush: with response body
// inspection off, the bytes go straight to the client's connection but stay in
// Caddy's buffer until the handler returns, so server-sent events and other
// streamed responses arrive all at once at the end. neo_waf hands the handlers
// after the WAF a writer whose Flush reaches the connection once the WAF has
// let the response head through (never before, so a response the WAF still
// inspects is never sent early). WebSocket upgrades (Hijack) pass through too.
//
// Per-tenant policy: when the config has a neo app, neo_waf looks up the
// request's host in the tenant registry and passes the tenant's WAF override
// (TenantConfig.WAF) to the one shared WAF as the request headers
// Neo-Waf-Mode and Neo-Waf-Paranoia, which the edge's rules 900010 to 900014
// turn into ctl:ruleEngine=DetectionOnly and tx.blocking_paranoia_level.
// Whatever a client sends in those headers is removed first, and they are
// removed again before the request goes on, so they never reach an upstream.
//
// A tenant's WAF exclusions (exclusions.go) travel the same way, as the
// number of the tenant's registered exclusion set and the exclusions that
// apply to the request's path (header Neo-Waf-Exclusions, read by the
// neoExclude rule). The WAF's content-aware inspection (the neoContent
// action, internal/wafcontent) rewrites GraphQL documents and data: URLs
// into what they carry.
package edgewaf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	_ "github.com/projectneo/caddy-neo/internal/wafcontent" // the neoContent action
	"github.com/projectneo/caddy-neo/modules/neo"
	"github.com/projectneo/caddy-neo/modules/wafaccel"
)

// Request headers that carry a tenant's WAF policy to the WAF's rules.
const (
	HeaderMode       = "Neo-Waf-Mode"
	HeaderParanoia   = "Neo-Waf-Paranoia"
	HeaderExclusions = wafaccel.ExclusionHeader
)

// paranoiaValues are the header values of levels 1 to 4, allocated once.
var paranoiaValues = [5][]string{nil, {"1"}, {"2"}, {"3"}, {"4"}}

var detectionOnly = []string{neo.WAFDetectionOnly}

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the neo_waf handler.
type Handler struct {
	// WAFRaw is the WAF handler to run, normally coraza-caddy's
	// `{"handler": "waf", ...}`. Required.
	WAFRaw json.RawMessage `json:"waf,omitempty" caddy:"namespace=http.handlers inline_key=handler"`

	waf    caddyhttp.MiddlewareHandler
	neo    *neo.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_waf",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the WAF handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.WAFRaw == nil {
		return fmt.Errorf("waf: a WAF handler is required")
	}
	// Coraza spills large bodies to the temporary directory and checks at
	// load that it is writable; an image whose root is read-only points
	// TMPDIR into a volume, where it may not exist yet.
	if err := os.MkdirAll(os.TempDir(), 0o700); err != nil {
		return fmt.Errorf("temporary directory (TMPDIR): %w", err)
	}
	mod, err := ctx.LoadModule(h, "WAFRaw")
	if err != nil {
		return fmt.Errorf("loading waf handler: %w", err)
	}
	mw, ok := mod.(caddyhttp.MiddlewareHandler)
	if !ok {
		return fmt.Errorf("waf: module %T is not an HTTP middleware handler", mod)
	}
	h.waf = mw
	h.logger = ctx.Logger()
	if app, err := ctx.AppIfConfigured("neo"); err == nil && app != nil {
		h.neo, _ = app.(*neo.App)
	}
	if h.neo != nil && !strings.Contains(strings.ToLower(string(h.WAFRaw)), "neoexclude") {
		h.logger.Warn("the WAF's directives have no neoExclude rule: tenants' WAF exclusions are not applied")
	}
	return nil
}

// ServeHTTP runs the WAF, with the tenant's policy, and flush pass-through
// for the handlers after it.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.setPolicy(r)
	outer := &headTracker{ResponseWriter: w}
	err := h.waf.ServeHTTP(outer, r, caddyhttp.HandlerFunc(func(ww http.ResponseWriter, r *http.Request) error {
		outer.passed = true
		delete(r.Header, HeaderMode)
		delete(r.Header, HeaderParanoia)
		delete(r.Header, HeaderExclusions)
		return next.ServeHTTP(&flushThrough{ResponseWriter: ww, outer: outer, upgrade: isUpgrade(r)}, r)
	}))
	// Coraza writes its audit log as its handler returns: the outcome is
	// known now, before the access log line is written.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		publishOutcome(r, repl, !outer.passed && err != nil)
	}
	return err
}

// setPolicy replaces the policy headers with the policy of the tenant the
// host belongs to (none: the edge's policy).
func (h Handler) setPolicy(r *http.Request) {
	// canonical keys: a client's "neo-waf-mode" was canonicalised on read
	delete(r.Header, HeaderMode)
	delete(r.Header, HeaderParanoia)
	delete(r.Header, HeaderExclusions)
	if h.neo == nil {
		return
	}
	t, ok := h.neo.Registry().Snapshot().TenantForHost(r.Host)
	if !ok || t.Config.WAF == nil {
		return
	}
	p := t.Config.WAF
	if p.Mode == neo.WAFDetectionOnly {
		r.Header[HeaderMode] = detectionOnly
	}
	if p.Paranoia >= 1 && p.Paranoia <= 4 {
		r.Header[HeaderParanoia] = paranoiaValues[p.Paranoia]
	}
	if len(p.Exclusions) > 0 {
		h.setExclusions(r, t.Name, p)
	}
}

// headTracker is the writer the WAF writes to; it records whether the WAF
// has let the response head through.
type headTracker struct {
	http.ResponseWriter
	headSent bool
	passed   bool // the WAF let the request through to the next handler
	switched bool // a 101 went out: nothing more is written as HTTP
}

func (t *headTracker) WriteHeader(code int) {
	if t.switched {
		return // the connection is the upgraded protocol's now (the WAF writes its default head after the handler)
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		t.headSent = true
	}
	t.switched = code == http.StatusSwitchingProtocols
	t.ResponseWriter.WriteHeader(code)
}

func (t *headTracker) Write(b []byte) (int, error) {
	t.headSent = true
	return t.ResponseWriter.Write(b)
}

func (t *headTracker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(t.ResponseWriter).Hijack()
}

func (t *headTracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// flushThrough is the writer the handlers after the WAF get.
//
// A WebSocket handshake's 101 goes straight to the connection's writer:
// coraza-caddy v2.1.0's writer holds a status back until the first body
// write or flush, and a 101 has neither before the connection is hijacked,
// so the client never got it (the request phases, where the WAF inspects
// the handshake, ran before; a response to an upgrade has no body to
// inspect, and response body access is off at the edge).
type flushThrough struct {
	http.ResponseWriter // the WAF's writer
	outer               *headTracker
	upgrade             bool // the request asks for a WebSocket
}

func (f *flushThrough) WriteHeader(code int) {
	if f.upgrade && code == http.StatusSwitchingProtocols {
		f.outer.WriteHeader(code)
		return
	}
	f.ResponseWriter.WriteHeader(code)
}

// isUpgrade reports whether r is a WebSocket handshake.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (f *flushThrough) FlushError() error {
	// Let the WAF write the head if it holds it back until a flush.
	if fl, ok := f.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
	if !f.outer.headSent {
		return nil // the WAF still holds the response (it inspects the body)
	}
	return http.NewResponseController(f.outer.ResponseWriter).Flush()
}

func (f *flushThrough) Flush() { _ = f.FlushError() }

func (f *flushThrough) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if f.upgrade && f.outer.switched {
		return http.NewResponseController(f.outer).Hijack()
	}
	return http.NewResponseController(f.ResponseWriter).Hijack()
}

func (f *flushThrough) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.Flusher                = (*flushThrough)(nil)
	_ http.Hijacker               = (*flushThrough)(nil)
	_ http.Hijacker               = (*headTracker)(nil)
)
