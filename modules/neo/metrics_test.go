package neo

import (
	"testing"

	"github.com/projectneo/caddy-neo/modules/zonelb"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// TestRequestMetricsCached checks that the per-pool cache of metric series
// counts every request in the series of its own tenant, stage and app (or
// service), also when two apps of one neo config use different vectors.
func TestRequestMetricsCached(t *testing.T) {
	h := testHandler(t)
	h.app.metrics = &metrics{}
	acmeDev := mRequests.WithLabelValues("acme", "dev", "orders")
	acmeProd := mRequests.WithLabelValues("acme", "prod", "orders")
	globex := mRequests.WithLabelValues("globex", "dev", "billing")
	build := mPlatform.WithLabelValues("build")
	before := []float64{testutil.ToFloat64(acmeDev), testutil.ToFloat64(acmeProd), testutil.ToFloat64(globex), testutil.ToFloat64(build)}
	for range 3 {
		if _, _, err, _ := serve(t, h, "acme-dev.apps.localhost", "/orders/x", nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, _, err, _ := serve(t, h, "globex-dev.apps.localhost", "/billing/", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err, _ := serve(t, h, "acme.platform.localhost", "/api/build/x", nil); err != nil {
		t.Fatal(err)
	}
	got := []float64{testutil.ToFloat64(acmeDev), testutil.ToFloat64(acmeProd), testutil.ToFloat64(globex), testutil.ToFloat64(build)}
	for i, want := range []float64{3, 0, 2, 1} {
		if got[i]-before[i] != want {
			t.Fatalf("series %d counted %v, want %v", i, got[i]-before[i], want)
		}
	}

	// The same compiled pool, counted by an app without the tenant label:
	// the cached series of the other vector must not be used.
	noTenant := mRequestsNoTenant.WithLabelValues("dev", "orders")
	b := testutil.ToFloat64(noTenant)
	h.app.metrics = &metrics{noTenant: true}
	if _, _, err, _ := serve(t, h, "acme-dev.apps.localhost", "/orders/x", nil); err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(noTenant) - b; d != 1 {
		t.Fatalf("no-tenant series counted %v", d)
	}
	if d := testutil.ToFloat64(acmeDev) - got[0]; d != 0 {
		t.Fatalf("tenant series counted %v after switching vectors", d)
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
