package neo

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/zonelb"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// access serves one request through neo_access and neo_route (and, when
// routed, a handler answering status), with the ExtraLogFields a server sets.
func access(t testing.TB, h *AccessHandler, host, target string, status int, hdr http.Header) (*httptest.ResponseRecorder, *caddyhttp.ExtraLogFields, error) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &http.Request{Method: "GET", URL: u, RequestURI: target, Host: host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, v := range hdr {
		r.Header[k] = v
	}
	extra := new(caddyhttp.ExtraLogFields)
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, extra)
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	route := &RouteHandler{app: h.app, logger: zap.NewNop()}
	err = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("X-Test-Blocked") != "" {
			// a WAF or rate limit before routing
			return caddyhttp.Error(http.StatusForbidden, nil)
		}
		return route.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set(HeaderServedReplica, "10.0.0.7:8080")
			w.Header().Set(HeaderServedZone, "az-b")
			w.WriteHeader(status)
			return nil
		}))
	}))
	return w, extra, err
}

// TestRequestMetricsCached checks that neo_access counts every request once,
// in the series of its own tenant, stage, app (or service) and status
// class, through the per-pool cache, also when two apps of one neo config
// use different vectors; a request stopped before routing counts for the
// tenant of its host.
func TestRequestMetricsCached(t *testing.T) {
	h := &AccessHandler{app: newTestApp(t, demoTenants()), metrics: &metrics{}, logger: zap.NewNop()}
	acmeDev := mRequests.WithLabelValues("acme", "dev", "orders", "2xx")
	acmeDev5 := mRequests.WithLabelValues("acme", "dev", "orders", "5xx")
	acmeProd := mRequests.WithLabelValues("acme", "prod", "orders", "2xx")
	globex := mRequests.WithLabelValues("globex", "dev", "billing", "2xx")
	blocked := mRequests.WithLabelValues("globex", "dev", "", "4xx")
	build := mPlatform.WithLabelValues("acme", "build", "2xx")
	series := []prometheus.Collector{acmeDev, acmeDev5, acmeProd, globex, blocked, build}
	counts := func() []float64 {
		var out []float64
		for _, c := range series {
			out = append(out, testutil.ToFloat64(c))
		}
		return out
	}
	durBefore := []uint64{histCount(mDuration.WithLabelValues("acme", "2xx")), histCount(mDuration.WithLabelValues("acme", "5xx"))}
	before := counts()
	for range 3 {
		if _, _, err := access(t, h, "acme-dev.apps.localhost", "/orders/x", 200, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := access(t, h, "acme-dev.apps.localhost", "/orders/x", 503, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := access(t, h, "globex-dev.apps.localhost", "/billing/", 200, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := access(t, h, "globex-dev.apps.localhost", "/billing/", 200, http.Header{"X-Test-Blocked": {"1"}}); status(err) != 403 {
		t.Fatalf("blocked request: %v", err)
	}
	if _, _, err := access(t, h, "acme.platform.localhost", "/api/build/x", 200, nil); err != nil {
		t.Fatal(err)
	}
	got := counts()
	for i, want := range []float64{3, 1, 0, 2, 1, 1} {
		if got[i]-before[i] != want {
			t.Fatalf("series %d counted %v, want %v", i, got[i]-before[i], want)
		}
	}
	if d := histCount(mDuration.WithLabelValues("acme", "2xx")) - durBefore[0]; d != 4 { // 3 dev + 1 platform
		t.Fatalf("acme 2xx latency observed %d times, want 4", d)
	}
	if d := histCount(mDuration.WithLabelValues("acme", "5xx")) - durBefore[1]; d != 1 {
		t.Fatalf("acme 5xx latency observed %d times, want 1", d)
	}

	// The same compiled pool, counted by an app without the tenant label:
	// the cached series of the other vector must not be used.
	noTenant := mRequestsNoTenant.WithLabelValues("dev", "orders", "2xx")
	b := testutil.ToFloat64(noTenant)
	h.metrics = &metrics{noTenant: true}
	if _, _, err := access(t, h, "acme-dev.apps.localhost", "/orders/x", 200, nil); err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(noTenant) - b; d != 1 {
		t.Fatalf("no-tenant series counted %v", d)
	}
	if d := testutil.ToFloat64(acmeDev) - got[0]; d != 0 {
		t.Fatalf("tenant series counted %v after switching vectors", d)
	}
}

// TestAccessLogFields: the access line gets the request's tenant, stage,
// app, the replica and zone a stage gateway reported (removed from the
// response), and nothing for what is unknown.
func TestAccessLogFields(t *testing.T) {
	h := &AccessHandler{app: newTestApp(t, demoTenants()), metrics: &metrics{}, logger: zap.NewNop()}
	line := func(extra *caddyhttp.ExtraLogFields) map[string]any {
		enc := zapcore.NewMapObjectEncoder()
		for _, f := range extraFields(extra) {
			f.AddTo(enc)
		}
		return enc.Fields
	}
	w, extra, err := access(t, h, "acme-dev.apps.localhost", "/orders/x", 201, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := line(extra)
	want := map[string]any{"tenant": "acme", "stage": "dev", "app": "orders", "replica": "10.0.0.7:8080", "zone": "az-b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if w.Header().Get(HeaderServedReplica) != "" || w.Header().Get(HeaderServedZone) != "" || w.Code != 201 {
		t.Fatalf("response %d %v: the gateway's report reached the client", w.Code, w.Header())
	}
	_, extra, _ = access(t, h, "globex.apps.localhost", "/shop/", 200, http.Header{"X-Test-Blocked": {"1"}})
	if got := line(extra); fmt.Sprint(got) != fmt.Sprint(map[string]any{"tenant": "globex", "stage": "prod"}) {
		t.Fatalf("blocked request: fields %v", got)
	}
	_, extra, _ = access(t, h, "nobody.example", "/", 200, nil)
	if got := line(extra); len(got) != 0 {
		t.Fatalf("unknown host: fields %v", got)
	}
}

// TestSelectionMetricsCached checks that selections are counted in the
// series of the chosen replica's zone and the outcome, per tenant.
func TestSelectionMetricsCached(t *testing.T) {
	tenants := demoTenants()
	tenants["acme"].Apps["orders"].Stages["dev"].Replicas = []Replica{{Address: "127.0.0.1:9111", Zone: "az-a"}, {Address: "127.0.0.1:9113", Zone: "az-b"}}
	h := &RouteHandler{app: newTestApp(t, tenants), logger: zap.NewNop()}
	rt, _, err, _ := serve(t, h, "acme-dev.apps.localhost", "/orders/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Pool.Zones() < 2 {
		t.Fatalf("demo pool has %d zones, want 2", rt.Pool.Zones())
	}
	local := mSelections.WithLabelValues("acme", "orders", "az-a", "local")
	spill := mSelections.WithLabelValues("acme", "orders", "az-b", "spill")
	none := mSelections.WithLabelValues("acme", "orders", "", "unhealthy")
	other := mSelections.WithLabelValues("globex", "orders", "az-a", "local")
	b := []float64{testutil.ToFloat64(local), testutil.ToFloat64(spill), testutil.ToFloat64(none), testutil.ToFloat64(other)}
	zb := rt.Pool.ZoneIndex("az-b")
	for range 4 {
		countSelection(rt, "orders", 0, "az-a", zonelb.Local)
	}
	countSelection(rt, "orders", zb, "az-b", zonelb.Spill)
	countSelection(rt, "orders", -1, "", zonelb.Unhealthy)
	a := []float64{testutil.ToFloat64(local), testutil.ToFloat64(spill), testutil.ToFloat64(none), testutil.ToFloat64(other)}
	for i, want := range []float64{4, 1, 1, 0} {
		if a[i]-b[i] != want {
			t.Fatalf("series %d counted %v, want %v", i, a[i]-b[i], want)
		}
	}
}

// extraFields reads the fields added to an ExtraLogFields (unexported).
func extraFields(e *caddyhttp.ExtraLogFields) []zapcore.Field {
	return reflect.NewAt(reflect.TypeOf([]zapcore.Field{}), reflect.ValueOf(e).Elem().FieldByName("fields").Addr().UnsafePointer()).Elem().Interface().([]zapcore.Field)
}

// histCount is the number of observations of a histogram series.
func histCount(o prometheus.Observer) uint64 {
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestAccessWithoutRegistry: in a config without a neo app, neo_access
// still observes every request, with no tenant.
func TestAccessWithoutRegistry(t *testing.T) {
	h := &AccessHandler{metrics: &metrics{}, logger: zap.NewNop()}
	extra := new(caddyhttp.ExtraLogFields)
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, extra)
	r := httptest.NewRequest("GET", "https://acme-dev.apps.localhost/orders/", nil).WithContext(ctx)
	none := mRequests.WithLabelValues("", "", "", "4xx")
	before := testutil.ToFloat64(none)
	err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusTooManyRequests, nil)
	}))
	if status(err) != 429 || testutil.ToFloat64(none)-before != 1 {
		t.Fatalf("error %v, counted %v", err, testutil.ToFloat64(none)-before)
	}
}
