package neo

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// serve runs neo_route on a request built from a raw request target and
// returns the route passed on (nil if not), the error and the recorder.
func serve(t testing.TB, h *RouteHandler, host, target string, hdr http.Header) (*Route, *http.Request, error, *httptest.ResponseRecorder) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("target %q: %v", target, err)
	}
	r := &http.Request{Method: "GET", URL: u, RequestURI: target, Host: host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, v := range hdr {
		r.Header[k] = v
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	var got *Route
	var gotReq *http.Request
	err = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got, _ = RouteFromRequest(r)
		gotReq = r
		return nil
	}))
	return got, gotReq, err, w
}

func status(err error) int {
	if he, ok := err.(caddyhttp.HandlerError); ok {
		return he.StatusCode
	}
	if err != nil {
		return 500
	}
	return 200
}

func testHandler(t testing.TB) *RouteHandler {
	return &RouteHandler{app: newTestApp(t, demoTenants()), logger: zap.NewNop()}
}

func TestRouteHeadersAndPlaceholders(t *testing.T) {
	h := testHandler(t)
	rt, r, err, _ := serve(t, h, "acme-dev.apps.localhost:8443", "/orders/x?q=1", http.Header{
		"Neo-Tenant": {"globex"}, "Neo-App": {"billing"}, "Neo-Service": {"build"}, "neo_tenant": {"globex"}, "NEO-STAGE": {"prod"}, "Neo-Foo": {"x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Tenant != "acme" || rt.Stage != "dev" || rt.App != "orders" || rt.Zone != "az-a" {
		t.Fatalf("route %+v", rt)
	}
	want := http.Header{"Neo-Tenant": {"acme"}, "Neo-Stage": {"dev"}, "Neo-App": {"orders"}}
	for k, v := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "neo") && (len(want[k]) != 1 || want[k][0] != v[0] || len(v) != 1) {
			t.Fatalf("header %s: %v survived", k, v)
		}
	}
	for k := range want {
		if r.Header.Get(k) != want[k][0] {
			t.Fatalf("header %s = %q", k, r.Header.Get(k))
		}
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if got := repl.ReplaceAll("{neo.tenant}/{neo.stage}/{neo.app}/{neo.service}/{neo.zone}", "-"); got != "acme/dev/orders/-/az-a" {
		t.Fatalf("placeholders %q", got)
	}
	// Platform.
	rt, r, err, _ = serve(t, h, "acme.platform.localhost", "/api/build/x", http.Header{"Neo-Tenant": {"globex"}})
	if err != nil || rt.Service != "build" || r.Header.Get("Neo-Tenant") != "acme" || r.Header.Get("Neo-Service") != "build" || r.Header.Get("Neo-App") != "" {
		t.Fatalf("platform: %v %+v %v", err, rt, r.Header)
	}
}

func TestGenericNotFound(t *testing.T) {
	h := testHandler(t)
	var first error
	for _, tc := range [][2]string{
		{"acme-dev.apps.localhost", "/billing/"}, // other tenant's app
		{"acme-dev.apps.localhost", "/nope/"},    // unknown app
		{"nobody.apps.localhost", "/orders/"},    // unknown tenant
		{"nobody-dev.apps.localhost", "/orders/"},
		{"acme-qa.apps.localhost", "/orders/"}, // unknown stage
		{"acme.platform.localhost", "/nope/"},  // unknown service
		{"example.com", "/"},                   // unknown host
		{"[::1]:443", "/"},
	} {
		rt, _, err, w := serve(t, h, tc[0], tc[1], nil)
		if rt != nil || status(err) != 404 || w.Body.Len() != 0 || len(w.Header()) != 0 {
			t.Fatalf("%s%s: route %v err %v body %q headers %v", tc[0], tc[1], rt, err, w.Body, w.Header())
		}
		if first == nil {
			first = err
		}
	}
}

// TestSpoofing is the isolation table: nothing a client sends makes a
// request reach another tenant or another app than the one its host and
// canonical path name.
func TestSpoofing(t *testing.T) {
	h := testHandler(t)
	hTrust := &RouteHandler{app: h.app, logger: zap.NewNop(), TrustForwardedHost: true}
	for _, tc := range []struct {
		name         string
		h            *RouteHandler
		host, target string
		hdr          http.Header
		status       int
		tenant, app  string
		path         string // forwarded path
	}{
		{"neo-tenant spoof", h, "acme-dev.apps.localhost", "/orders/", http.Header{"Neo-Tenant": {"globex"}}, 200, "acme", "orders", "/orders/"},
		{"x-forwarded-host ignored", h, "acme-dev.apps.localhost", "/orders/", http.Header{"X-Forwarded-Host": {"globex-dev.apps.localhost"}}, 200, "acme", "orders", "/orders/"},
		{"x-forwarded-host untrusted peer", hTrust, "acme-dev.apps.localhost", "/orders/", http.Header{"X-Forwarded-Host": {"globex-dev.apps.localhost"}}, 200, "acme", "orders", "/orders/"},
		{"forwarded ignored", h, "acme-dev.apps.localhost", "/orders/", http.Header{"Forwarded": {"host=globex-dev.apps.localhost"}}, 200, "acme", "orders", "/orders/"},
		{"absolute form", h, "globex-dev.apps.localhost", "https://globex-dev.apps.localhost/billing/", nil, 400, "", "", ""},
		{"dot dot", h, "acme-dev.apps.localhost", "/orders/../billing", nil, 404, "", "", ""},
		{"dot dot to own app", h, "acme-dev.apps.localhost", "/orders/../ledger/x", nil, 200, "acme", "ledger", "/ledger/x"},
		{"dot", h, "acme-dev.apps.localhost", "/./orders/./x", nil, 200, "acme", "orders", "/orders/x"},
		{"dot dot above root", h, "acme-dev.apps.localhost", "/../../orders/x", nil, 200, "acme", "orders", "/orders/x"},
		{"encoded dots", h, "acme-dev.apps.localhost", "/orders/%2e%2e/billing", nil, 400, "", "", ""},
		{"encoded dots upper", h, "acme-dev.apps.localhost", "/orders/%2E%2E/ledger", nil, 400, "", "", ""},
		{"half encoded", h, "acme-dev.apps.localhost", "/orders/.%2e/ledger", nil, 400, "", "", ""},
		{"encoded slash", h, "acme-dev.apps.localhost", "/orders%2f..%2fbilling", nil, 400, "", "", ""},
		{"encoded slash upper", h, "acme-dev.apps.localhost", "/orders%2F", nil, 400, "", "", ""},
		{"double encoded", h, "acme-dev.apps.localhost", "/orders/%252e%252e/billing", nil, 400, "", "", ""},
		{"encoded backslash", h, "acme-dev.apps.localhost", "/orders%5c..%5cbilling", nil, 400, "", "", ""},
		{"backslash", h, "acme-dev.apps.localhost", "/orders\\..\\billing", nil, 400, "", "", ""},
		{"nul", h, "acme-dev.apps.localhost", "/orders%00/x", nil, 400, "", "", ""},
		{"double slash", h, "acme-dev.apps.localhost", "//orders//x", nil, 200, "acme", "orders", "/orders/x"},
		{"double slash other app", h, "acme-dev.apps.localhost", "//billing/", nil, 404, "", "", ""},
		{"app case", h, "acme-dev.apps.localhost", "/ORDERS/", nil, 404, "", "", ""},
		{"host port", h, "acme-dev.apps.localhost:8443", "/orders/", nil, 200, "acme", "orders", "/orders/"},
		{"host upper", h, "ACME-DEV.Apps.LocalHost", "/orders/", nil, 200, "acme", "orders", "/orders/"},
		{"host trailing dot", h, "acme-dev.apps.localhost.", "/orders/", nil, 200, "acme", "orders", "/orders/"},
		{"host trailing dot port", h, "acme-dev.apps.localhost.:8443", "/orders/", nil, 200, "acme", "orders", "/orders/"},
		{"host two dots", h, "acme-dev.apps.localhost..", "/orders/", nil, 404, "", "", ""},
		{"host bad port", h, "acme-dev.apps.localhost:x", "/orders/", nil, 404, "", "", ""},
		{"host userinfo", h, "globex@acme-dev.apps.localhost", "/orders/", nil, 404, "", "", ""},
		{"host unicode", h, "acme-dev.apps.localhoſt", "/orders/", nil, 404, "", "", ""},
		{"host empty", h, "", "/orders/", nil, 404, "", "", ""},
		{"encoded app name", h, "acme-dev.apps.localhost", "/%6frders/", nil, 200, "acme", "orders", "/orders/"},
		{"query not path", h, "acme-dev.apps.localhost", "/orders/?x=/../billing", nil, 200, "acme", "orders", "/orders/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, r, err, _ := serve(t, tc.h, tc.host, tc.target, tc.hdr)
			if st := status(err); st != tc.status {
				t.Fatalf("status %d, want %d (%v)", st, tc.status, err)
			}
			if tc.status != 200 {
				if rt != nil {
					t.Fatalf("route passed on: %+v", rt)
				}
				return
			}
			if rt.Tenant != tc.tenant || rt.App != tc.app || r.Header.Get("Neo-Tenant") != tc.tenant || r.Header.Get("Neo-App") != tc.app {
				t.Fatalf("route %+v headers %v", rt, r.Header)
			}
			if r.URL.Path != tc.path || !strings.HasPrefix(r.URL.EscapedPath(), "/"+tc.app) {
				t.Fatalf("forwarded path %q (escaped %q), want %q", r.URL.Path, r.URL.EscapedPath(), tc.path)
			}
		})
	}
}

func TestTrustedForwardedHost(t *testing.T) {
	h := testHandler(t)
	h.TrustForwardedHost = true
	u, _ := url.ParseRequestURI("/billing/")
	r := &http.Request{Method: "GET", URL: u, RequestURI: "/billing/", Host: "acme-dev.apps.localhost", Header: http.Header{"X-Forwarded-Host": {"globex-dev.apps.localhost, evil"}}}
	ctx := context.WithValue(context.Background(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: true})
	r = r.WithContext(ctx)
	var got *Route
	err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got, _ = RouteFromRequest(r)
		return nil
	}))
	if err != nil || got.Tenant != "globex" {
		t.Fatalf("trusted proxy's X-Forwarded-Host not used: %v %+v", err, got)
	}
}

func TestCustomDomainDefaultApp(t *testing.T) {
	tenants := demoTenants()
	h := &RouteHandler{app: newTestApp(t, tenants), logger: zap.NewNop()}
	rt, _, err, w := serve(t, h, "shop.acme.localhost", "/", nil)
	if err != nil || rt != nil || w.Code != 301 || w.Header().Get("Location") != "/orders/" {
		t.Fatalf("redirect: %v %v %d %v", err, rt, w.Code, w.Header())
	}
	tenants["acme"].Domains["shop.acme.localhost"].DefaultAppMode = "rewrite"
	h = &RouteHandler{app: newTestApp(t, tenants), logger: zap.NewNop()}
	rt, r, err, _ := serve(t, h, "shop.acme.localhost", "/", nil)
	if err != nil || rt.App != "orders" || rt.Stage != "prod" || r.URL.Path != "/orders/" {
		t.Fatalf("rewrite: %v %+v", err, rt)
	}
	tenants["acme"].Domains["shop.acme.localhost"].Pending = true
	h = &RouteHandler{app: newTestApp(t, tenants), logger: zap.NewNop()}
	if _, _, err, _ := serve(t, h, "shop.acme.localhost", "/orders/", nil); status(err) != 404 {
		t.Fatalf("pending domain routed: %v", err)
	}
}

func TestCanonicalPathRule(t *testing.T) {
	for in, want := range map[string]string{
		"/": "/", "/a": "/a", "/a/": "/a/", "/a/b/../c": "/a/c", "/a/./b": "/a/b", "//a//b//": "/a/b/",
		"/..": "/", "/a/..": "/", "/a/b/..": "/a/", "/a/.": "/a/", "/.a/..b/...": "/.a/..b/...",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSubjectRoute: a request that came through a stage gateway is served
// only when its host and path resolve to the tenant, stage and app of its
// NATS subject; another tenant's host (or app, stage, or a platform host)
// is a 404 with reason subject_mismatch, logged with the subject's tenant.
func TestSubjectRoute(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	h := &RouteHandler{app: newTestApp(t, demoTenants()), logger: zap.New(core)}
	acmeProdOrders := SubjectRoute{Stage: "prod", Tenant: "acme", App: "orders"}
	for _, c := range []struct {
		name, host, target string
		sr                 *SubjectRoute
		want               int
		tenant             string
	}{
		{"no subject", "globex.apps.localhost", "/billing/x", nil, 200, "globex"},
		{"matching", "acme.apps.localhost", "/orders/x", &acmeProdOrders, 200, "acme"},
		{"matching custom domain", "shop.acme.localhost", "/orders/x", &acmeProdOrders, 200, "acme"},
		{"another tenant's host", "globex.apps.localhost", "/billing/x", &SubjectRoute{Stage: "prod", Tenant: "acme", App: "billing"}, 404, ""},
		{"another tenant, same app name", "globex.apps.localhost", "/shop/x", &SubjectRoute{Stage: "prod", Tenant: "acme", App: "shop"}, 404, ""},
		{"another app", "acme.apps.localhost", "/ledger/x", &acmeProdOrders, 404, ""},
		{"another stage", "acme-dev.apps.localhost", "/orders/x", &acmeProdOrders, 404, ""},
		{"platform host", "acme.platform.localhost", "/api/build/x", &acmeProdOrders, 404, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, _ := url.ParseRequestURI(c.target)
			r := &http.Request{Method: "GET", URL: u, RequestURI: c.target, Host: c.host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
			ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
			if c.sr != nil {
				ctx = WithSubjectRoute(ctx, *c.sr)
			}
			var got *Route
			n := logs.Len()
			err := h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx), caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
				got, _ = RouteFromRequest(r)
				return nil
			}))
			if status(err) != c.want {
				t.Fatalf("status %d, want %d (%v)", status(err), c.want, err)
			}
			if c.want == 200 {
				if got == nil || got.Tenant != c.tenant {
					t.Fatalf("route %+v, want tenant %s", got, c.tenant)
				}
				return
			}
			if got != nil {
				t.Fatalf("routed to %+v", got)
			}
			if logs.Len() != n+1 {
				t.Fatalf("%d new log lines, want 1", logs.Len()-n)
			}
			e := logs.All()[n]
			if f := e.ContextMap(); f["tenant"] != c.sr.Tenant || f["reason"] != MissSubject {
				t.Fatalf("log %q %v", e.Message, f)
			}
		})
	}
}

// TestSubjectRouteKeepsCaller: Neo-Caller and the user the edge's
// neo_identity admitted (Neo-User, Neo-User-Roles, Neo-Realm) survive
// neo_route only behind a stage gateway (a client at the edge cannot claim
// to be the platform or a user); any other Neo-* header goes everywhere.
func TestSubjectRouteKeepsCaller(t *testing.T) {
	h := testHandler(t)
	for _, viaGateway := range []bool{false, true} {
		u, _ := url.ParseRequestURI("/orders/x")
		r := &http.Request{Method: "GET", URL: u, RequestURI: "/orders/x", Host: "acme.apps.localhost", Header: http.Header{"Neo-Caller": {"platform"}, "Neo-User": {"x"}, "Neo-User-Roles": {"r1,r2"}, "Neo-Realm": {"prod"}, "Neo-Tenant": {"globex"}, "neo_other": {"y"}}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		if viaGateway {
			ctx = WithSubjectRoute(ctx, SubjectRoute{Stage: "prod", Tenant: "acme", App: "orders"})
		}
		var got http.Header
		err := h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx), caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
			got = r.Header
			return nil
		}))
		if err != nil || got == nil {
			t.Fatalf("gateway %v: %v", viaGateway, err)
		}
		if c := got.Get("Neo-Caller"); (c == "platform") != viaGateway {
			t.Errorf("gateway %v: Neo-Caller %q", viaGateway, c)
		}
		for k, v := range map[string]string{"Neo-User": "x", "Neo-User-Roles": "r1,r2", "Neo-Realm": "prod"} {
			if g := got.Get(k); (g == v) != viaGateway || (g != "" && g != v) {
				t.Errorf("gateway %v: %s %q", viaGateway, k, g)
			}
		}
		if got.Get("Neo-Tenant") == "globex" || got.Get("neo_other") != "" {
			t.Errorf("gateway %v: other neo headers kept: %v", viaGateway, got)
		}
	}
}

// TestSubjectRouteCarriesZone: behind a stage gateway the route's zone is
// the one the subject addressed (lb_policy neo_zone starts there); at the
// edge it is the node's own.
func TestSubjectRouteCarriesZone(t *testing.T) {
	h := testHandler(t)
	for _, c := range []struct {
		sr   *SubjectRoute
		want string
	}{
		{nil, h.app.reg.Snapshot().g.zone},
		{&SubjectRoute{Stage: "prod", Zone: "az-b", Tenant: "acme", App: "orders"}, "az-b"},
		{&SubjectRoute{Stage: "prod", Zone: "az-c", Tenant: "acme", App: "orders"}, "az-c"},
	} {
		u, _ := url.ParseRequestURI("/orders/x")
		r := &http.Request{Method: "GET", URL: u, RequestURI: "/orders/x", Host: "acme.apps.localhost", Header: http.Header{"Neo-Zone": {"az-evil"}}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		repl := caddy.NewReplacer()
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		if c.sr != nil {
			ctx = WithSubjectRoute(ctx, *c.sr)
		}
		var zone, placeholder string
		err := h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx), caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
			rt, _ := RouteFromRequest(r)
			zone = rt.Zone
			placeholder = repl.ReplaceAll("{neo.zone}", "")
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if zone != c.want || placeholder != c.want {
			t.Errorf("subject %+v: route zone %q, {neo.zone} %q, want %q", c.sr, zone, placeholder, c.want)
		}
	}
}

// TestStageHost: neo_stage_host names a tenant's Runtime host in a stage
// from the registry, and refuses tenants and stages it does not have.
func TestStageHost(t *testing.T) {
	h := testHandler(t)
	sh := &StageHostHandler{Stage: "{stage}", Tenant: "{tenant}", app: h.app, logger: zap.NewNop()}
	snap := h.app.reg.Snapshot()
	stages := snap.Stages()
	prod := stages[len(stages)-1]
	cases := []struct {
		stage, tenant, want string
		status              int
	}{
		{prod, "acme", "acme" + snap.g.runtimeSuffix, 0},
		{"nostage", "acme", "", http.StatusNotFound},
		{prod, "nobody", "", http.StatusNotFound},
		{prod, "", "", http.StatusNotFound},
	}
	if len(stages) > 1 {
		cases = append(cases, struct {
			stage, tenant, want string
			status              int
		}{stages[0], "acme", "acme-" + stages[0] + snap.g.runtimeSuffix, 0})
	}
	for _, c := range cases {
		repl := caddy.NewReplacer()
		repl.Set("stage", c.stage)
		repl.Set("tenant", c.tenant)
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
		r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
		got := ""
		err := sh.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			got = repl.ReplaceAll("{neo.stage_host}", "")
			return nil
		}))
		var he caddyhttp.HandlerError
		switch {
		case c.status == 0 && (err != nil || got != c.want):
			t.Errorf("%s/%s: host %q, err %v; want %q", c.stage, c.tenant, got, err, c.want)
		case c.status != 0 && (!errors.As(err, &he) || he.StatusCode != c.status || got != ""):
			t.Errorf("%s/%s: err %v, next called with %q; want status %d", c.stage, c.tenant, err, got, c.status)
		}
	}
}
