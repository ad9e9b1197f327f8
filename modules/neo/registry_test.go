package neo

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestPmapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var m pmap[int]
	ref := map[string]int{}
	versions := []pmap[int]{}
	refs := []map[string]int{}
	for i := range 20000 {
		k := fmt.Sprintf("k%d", rng.IntN(3000))
		if rng.IntN(3) == 0 {
			m = m.Without(k)
			delete(ref, k)
		} else {
			m = m.With(k, i)
			ref[k] = i
		}
		if i%2000 == 0 {
			snap := map[string]int{}
			for k, v := range ref {
				snap[k] = v
			}
			versions = append(versions, m)
			refs = append(refs, snap)
		}
	}
	check := func(m pmap[int], ref map[string]int) {
		t.Helper()
		if m.Len() != len(ref) {
			t.Fatalf("len %d, want %d", m.Len(), len(ref))
		}
		for k, v := range ref {
			if got, ok := m.Get(k); !ok || got != v {
				t.Fatalf("Get(%q) = %d,%v want %d", k, got, ok, v)
			}
		}
		n := 0
		m.Range(func(k string, v int) bool { n++; return ref[k] == v })
		if n != len(ref) {
			t.Fatalf("range saw %d, want %d", n, len(ref))
		}
		if _, ok := m.Get("absent"); ok {
			t.Fatal("absent key found")
		}
	}
	check(m, ref)
	// Older versions are unchanged by later changes.
	for i := range versions {
		check(versions[i], refs[i])
	}
}

func TestPmapCollisions(t *testing.T) {
	// Force every key into the collision lists by using a node at full depth.
	n := &pnode[int]{}
	for i := range 5 {
		n, _ = n.with(pentry[int]{hash: 42, key: fmt.Sprint(i), val: i}, pdepth)
	}
	if len(n.entries) != 5 {
		t.Fatalf("%d entries", len(n.entries))
	}
	n, ok := n.without("3", 42, pdepth)
	if !ok || len(n.entries) != 4 {
		t.Fatal("without in collision list failed")
	}
}

func TestResolveDemo(t *testing.T) {
	a := newTestApp(t, demoTenants())
	s := a.reg.Snapshot()
	for _, tc := range []struct {
		host, path                       string
		tenant, stage, app, service, red string
		miss                             string
	}{
		{"acme-dev.apps.localhost", "/orders/x", "acme", "dev", "orders", "", "", ""},
		{"acme.apps.localhost", "/orders/x", "acme", "prod", "orders", "", "", ""},
		{"acme.apps.localhost", "/orders", "acme", "prod", "orders", "", "", ""},
		{"acme-dev.apps.localhost", "/ledger/", "acme", "dev", "ledger", "", "", ""},
		{"shop.acme.localhost", "/", "acme", "prod", "orders", "", "/orders/", ""},
		{"shop.acme.localhost", "/ledger/a", "acme", "prod", "ledger", "", "", ""},
		// default_app_mode all: every path is the default app's (gRPC paths)
		{"rpc.acme.example", "/grpc.health.v1.Health/Check", "acme", "prod", "ledger", "", "", ""},
		{"rpc.acme.example", "/orders/x", "acme", "prod", "ledger", "", "", ""},
		{"rpc.acme.example", "/", "acme", "prod", "ledger", "", "", ""},
		{"acme.platform.localhost", "/api/build/x", "acme", "", "", "build", "", ""},
		{"acme.platform.localhost", "/api/build", "acme", "", "", "build", "", ""},
		{"acme.platform.localhost", "/api/other", "acme", "", "", "api", "", ""},
		{"globex.platform.localhost", "/api/deploy/x", "globex", "", "", "deploy", "", ""},
		{"acme.platform.localhost", "/orders/", "", "", "", "", "", MissService},
		{"acme-dev.apps.localhost", "/billing/", "", "", "", "", "", MissApp},
		{"acme-dev.apps.localhost", "/", "", "", "", "", "", MissApp},
		{"acme.apps.localhost", "/", "", "", "", "", "", MissApp},
		{"nobody.apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{"nobody-dev.apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{"acme-test.apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{"x.acme.apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{"apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{".apps.localhost", "/orders/", "", "", "", "", "", MissHost},
		{"nobody.platform.localhost", "/api/build/", "", "", "", "", "", MissHost},
		{"acme.localhost", "/", "", "", "", "", "", MissHost},
	} {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			res, miss := s.Resolve(tc.host, tc.path)
			if miss != tc.miss {
				t.Fatalf("miss %q, want %q", miss, tc.miss)
			}
			if miss != "" {
				return
			}
			var app, svc string
			if res.App != nil {
				app = res.App.Name
			}
			if res.Service != nil {
				svc = res.Service.Name
			}
			if res.Tenant.Name != tc.tenant || res.Stage != tc.stage || app != tc.app || svc != tc.service || res.Redirect != tc.red {
				t.Fatalf("got %s/%s/%s/%s redirect %q", res.Tenant.Name, res.Stage, app, svc, res.Redirect)
			}
			if len(res.Replicas()) == 0 {
				t.Fatal("no replicas")
			}
		})
	}
	if r, ok := s.AppReplicas("acme", "orders", "dev"); !ok || r[0].Address != "127.0.0.1:9111" {
		t.Fatalf("AppReplicas: %v %v", r, ok)
	}
	if _, ok := s.AppReplicas("globex", "orders", "dev"); ok {
		t.Fatal("AppReplicas crossed tenants")
	}
	if r, ok := s.ServiceReplicas("build"); !ok || r[0].Address != "127.0.0.1:9501" {
		t.Fatalf("ServiceReplicas: %v %v", r, ok)
	}
}

func TestAmbiguousTenantsRejected(t *testing.T) {
	stages := []string{"dev", "test", "prod"}
	g, err := newGlobals("az-a", "apps.localhost", "platform.localhost", stages, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{
		{"acme", "acme-dev"},
		{"acme-dev", "acme"},
		{"acme", "acme-test"},
		{"acme-test", "acme"},
		{"foo-dev", "foo-dev-test"}, // foo-dev in test = foo-dev-test in prod
	} {
		t.Run(pair[0]+"+"+pair[1], func(t *testing.T) {
			_, err := build(g, map[string]*TenantConfig{pair[0]: {}, pair[1]: {}}, nil, nil)
			if err == nil || !strings.Contains(err.Error(), `"`+pair[0]+`"`) || !strings.Contains(err.Error(), `"`+pair[1]+`"`) {
				t.Fatalf("want an error naming both tenants, got %v", err)
			}
		})
	}
	// Not ambiguous: different stems.
	if _, err := build(g, map[string]*TenantConfig{"acme": {}, "acmedev": {}, "dev-acme": {}}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTwelveStages(t *testing.T) {
	stages := []string{"dev", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "uat", "prod"}
	a := newTestApp(t, fleet(50, stages), stages...)
	s := a.reg.Snapshot()
	for i, st := range stages {
		host := "t000007-" + st + ".apps.localhost"
		if st == "prod" {
			host = "t000007.apps.localhost"
		}
		res, miss := s.Resolve(host, "/web/")
		if miss != "" || res.Stage != st || res.Tenant.Name != "t000007" || res.StageIndex != i {
			t.Fatalf("%s: %+v %s", host, res, miss)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		tenants map[string]*TenantConfig
		want    string
	}{
		"short tenant":   {map[string]*TenantConfig{"ab": {}}, "tenants.ab: tenant name"},
		"long tenant":    {map[string]*TenantConfig{strings.Repeat("a", 41): {}}, "must have 3 to 40"},
		"upper tenant":   {map[string]*TenantConfig{"Acme": {}}, "tenants.Acme"},
		"bad app":        {map[string]*TenantConfig{"acme": {Apps: map[string]*AppConfig{"-x": {}}}}, "tenants.acme.apps.-x"},
		"unknown stage":  {map[string]*TenantConfig{"acme": {Apps: map[string]*AppConfig{"web": {Stages: map[string]*StageConfig{"qa": {}}}}}}, "tenants.acme.apps.web.stages.qa: unknown stage"},
		"bad address":    {map[string]*TenantConfig{"acme": {Apps: map[string]*AppConfig{"web": {Stages: map[string]*StageConfig{"dev": {Replicas: []Replica{{Address: "nope"}}}}}}}}, "tenants.acme.apps.web.stages.dev.replicas[0].address"},
		"domain stage":   {map[string]*TenantConfig{"acme": {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "qa"}}}}, "tenants.acme.domains.shop.example.com.stage"},
		"domain app":     {map[string]*TenantConfig{"acme": {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "prod", DefaultApp: "x"}}}}, "default_app"},
		"domain in apps": {map[string]*TenantConfig{"acme": {Domains: map[string]*DomainConfig{"evil.apps.localhost": {Stage: "prod"}}}}, `tenants.acme.domains.evil.apps.localhost: "evil.apps.localhost" is under the runtime domain`},
		"waf mode":       {map[string]*TenantConfig{"acme": {WAF: &WAFPolicy{Mode: "off"}}}, "tenants.acme.waf.mode: must be blocking or detection_only"},
		"rate tier":      {map[string]*TenantConfig{"acme": {RateLimitTier: "Large"}}, "tenants.acme.rate_limit_tier"},
		"domain mode":    {map[string]*TenantConfig{"acme": {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "prod", DefaultAppMode: "al"}}}}, `default_app_mode: must be redirect, rewrite or all, got "al"`},
		"mode all alone": {map[string]*TenantConfig{"acme": {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "prod", DefaultAppMode: "all"}}}}, "default_app_mode: all needs a default_app"},
		"app protocol":   {map[string]*TenantConfig{"acme": {Apps: map[string]*AppConfig{"web": {Protocol: "http2"}}}}, `tenants.acme.apps.web.protocol: must be h1 or h2c, got "http2"`},
		"waf paranoia":   {map[string]*TenantConfig{"acme": {WAF: &WAFPolicy{Paranoia: 5}}}, "tenants.acme.waf.paranoia: want 1 to 4"},
		"domain twice": {map[string]*TenantConfig{
			"acme":   {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "prod"}}},
			"globex": {Domains: map[string]*DomainConfig{"shop.example.com": {Stage: "prod"}}},
		}, `already a domain of tenant "acme"`},
	} {
		t.Run(name, func(t *testing.T) {
			g, _ := newGlobals("az-a", "apps.localhost", "platform.localhost", []string{"dev", "prod"}, nil)
			_, err := build(g, tc.tenants, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
	for name, tc := range map[string]struct {
		zone, rd, pd string
		stages       []string
		svc          map[string]*ServiceConfig
		want         string
	}{
		"no zone":      {"", "apps.localhost", "platform.localhost", []string{"prod"}, nil, "zone: required"},
		"same domains": {"a", "x.localhost", "x.localhost", []string{"prod"}, nil, "must differ"},
		"dup stage":    {"a", "apps.localhost", "platform.localhost", []string{"dev", "dev"}, nil, "stages[1]: duplicate"},
		"bad stage":    {"a", "apps.localhost", "platform.localhost", []string{"Dev"}, nil, "stages[0]"},
		"svc path":     {"a", "apps.localhost", "platform.localhost", []string{"prod"}, map[string]*ServiceConfig{"b": {Path: "/api/../x/"}}, "services.b.path"},
		"svc dup":      {"a", "apps.localhost", "platform.localhost", []string{"prod"}, map[string]*ServiceConfig{"b": {Path: "/a/"}, "c": {Path: "/a/"}}, "services.c.path"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := newGlobals(tc.zone, tc.rd, tc.pd, tc.stages, tc.svc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TenantForHost finds the tenant of every kind of host, with any case,
// port or trailing dot, and nothing for other hosts.
func TestTenantForHost(t *testing.T) {
	a := newTestApp(t, demoTenants())
	snap := a.reg.Snapshot()
	for host, want := range map[string]string{
		"acme.apps.localhost": "acme", "ACME-dev.apps.localhost:8443": "acme", "globex.platform.localhost.": "globex",
		"acme-nope.apps.localhost": "", "evil.example.com": "", "apps.localhost": "", "[::1]:443": "", "": "",
	} {
		tn, ok := snap.TenantForHost(host)
		if got := ""; ok {
			got = tn.Name
			if got != want {
				t.Errorf("%q: tenant %q, want %q", host, got, want)
			}
		} else if want != "" {
			t.Errorf("%q: no tenant, want %q", host, want)
		}
	}
}

// The rate-limit tier of a host: its tenant's, "default" otherwise, and a
// change applies to the next lookup.
func TestTierMatcher(t *testing.T) {
	a := newTestApp(t, demoTenants())
	m := TierMatcher{Tiers: []string{"large"}, app: a}
	def := TierMatcher{Tiers: []string{DefaultTier}, app: a}
	req := func(host string) *http.Request { return &http.Request{Host: host} }
	if m.Match(req("acme.apps.localhost")) || !def.Match(req("acme.apps.localhost")) || !def.Match(req("nobody.example.com")) {
		t.Fatal("tenants without a tier must be in the default tier")
	}
	nt := &TenantConfig{RateLimitTier: "large", Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: reps("127.0.0.1:9900")}}}}}
	if _, err := a.Put("initech", nt); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"initech.apps.localhost", "INITECH-dev.apps.localhost:8443", "initech.platform.localhost"} {
		if !m.Match(req(h)) || def.Match(req(h)) {
			t.Fatalf("%s: not in the large tier", h)
		}
	}
	if (TierMatcher{Tiers: []string{"large"}}).Match(req("initech.apps.localhost")) {
		t.Fatal("without a neo app every host is in the default tier")
	}
}

func TestPutDeleteCopyOnWrite(t *testing.T) {
	a := newTestApp(t, demoTenants())
	before := a.reg.Snapshot()
	tc := &TenantConfig{Apps: map[string]*AppConfig{"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: reps("127.0.0.1:9900")}}}}}
	if created, err := a.Put("initech", tc); err != nil || !created {
		t.Fatalf("Put: %v %v", created, err)
	}
	after := a.reg.Snapshot()
	if _, miss := before.Resolve("initech.apps.localhost", "/crm/"); miss == "" {
		t.Fatal("the old snapshot changed")
	}
	if res, miss := after.Resolve("initech.apps.localhost", "/crm/"); miss != "" || res.Tenant.Name != "initech" {
		t.Fatalf("new snapshot: %s", miss)
	}
	oldAcme, _ := before.Tenant("acme")
	newAcme, _ := after.Tenant("acme")
	if oldAcme != newAcme {
		t.Fatal("an unchanged tenant was copied")
	}
	if _, err := a.Put("acme", tc); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("config tenant changed: %v", err)
	}
	if _, err := a.Put("acme-dev", tc); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("ambiguous tenant accepted: %v", err)
	}
	if err := a.Delete("initech"); err != nil {
		t.Fatal(err)
	}
	if _, miss := a.reg.Snapshot().Resolve("initech.apps.localhost", "/crm/"); miss != MissHost {
		t.Fatalf("deleted tenant still routed: %s", miss)
	}
	// A store tenant is loaded again by a new app (restart / reload).
	if _, err := a.Put("initech", tc); err != nil {
		t.Fatal(err)
	}
	b := newTestApp(t, demoTenants())
	b.store = a.store
	snap, err := b.load()
	if err != nil {
		t.Fatal(err)
	}
	if _, miss := snap.Resolve("initech.apps.localhost", "/crm/"); miss != "" {
		t.Fatal("stored tenant not loaded")
	}
}

func TestPmapInPlaceBuild(t *testing.T) {
	var m pmap[int]
	for i := range 5000 {
		m = m.withInPlace(fmt.Sprint(i), i)
	}
	old := m
	m2 := m.With("x", 1).Without("7")
	if m.Len() != 5000 || old.Len() != 5000 || m2.Len() != 5000 {
		t.Fatalf("lens %d %d %d", m.Len(), old.Len(), m2.Len())
	}
	if _, ok := m.Get("x"); ok {
		t.Fatal("With changed the map it was called on")
	}
	if _, ok := m.Get("7"); !ok {
		t.Fatal("Without changed the map it was called on")
	}
	for i := range 5000 {
		if v, ok := m.Get(fmt.Sprint(i)); !ok || v != i {
			t.Fatal(i)
		}
	}
}

// TestReplicaByIP: the egress gateway's caller lookup. A unique replica IP
// names its tenant, stage and app; an IP shared by replicas of different
// apps or tenants names nobody; a change shows in the next snapshot.
func TestReplicaByIP(t *testing.T) {
	a := newTestApp(t, demoTenants()) // demo replicas all on 127.0.0.1: shared
	if o, ok := a.reg.Snapshot().ReplicaByIP(netip.MustParseAddr("127.0.0.1")); ok {
		t.Fatalf("a shared address named %+v", o)
	}
	tc := &TenantConfig{Apps: map[string]*AppConfig{
		"crm": {Stages: map[string]*StageConfig{"prod": {Replicas: reps("10.1.0.5:8080", "10.1.0.6:8080")}}},
		"hr":  {Stages: map[string]*StageConfig{"dev": {Replicas: reps("10.1.0.7:8080", "[fd00::7]:8080")}}},
	}}
	if _, err := a.Put("initech", tc); err != nil {
		t.Fatal(err)
	}
	snap := a.reg.Snapshot()
	for ip, want := range map[string]ReplicaOwner{
		"10.1.0.5":        {"initech", "prod", "crm"},
		"10.1.0.6":        {"initech", "prod", "crm"},
		"10.1.0.7":        {"initech", "dev", "hr"},
		"::ffff:10.1.0.7": {"initech", "dev", "hr"},
		"fd00::7":         {"initech", "dev", "hr"},
	} {
		if o, ok := snap.ReplicaByIP(netip.MustParseAddr(ip)); !ok || o != want {
			t.Errorf("%s: %+v %v, want %+v", ip, o, ok, want)
		}
	}
	if _, ok := snap.ReplicaByIP(netip.MustParseAddr("10.1.0.8")); ok {
		t.Error("an unknown address named a caller")
	}
	// Another tenant taking the same IP makes it shared: nobody.
	if _, err := a.Put("umbrella", &TenantConfig{Apps: map[string]*AppConfig{"web": {Stages: map[string]*StageConfig{"prod": {Replicas: reps("10.1.0.5:9090")}}}}}); err != nil {
		t.Fatal(err)
	}
	if o, ok := a.reg.Snapshot().ReplicaByIP(netip.MustParseAddr("10.1.0.5")); ok {
		t.Fatalf("an address two tenants share named %+v", o)
	}
}
