package neo

import (
	"context"

	"fmt"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"go.uber.org/zap"
)

// memStore is a Store in memory, for tests.
type memStore struct {
	mu sync.Mutex
	m  map[string]*TenantConfig
}

func (s *memStore) Load() (map[string]*TenantConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*TenantConfig{}
	for k, v := range s.m {
		out[k] = v.Clone()
	}
	return out, nil
}

func (s *memStore) Put(name string, t *TenantConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*TenantConfig{}
	}
	s.m[name] = t.Clone()
	return nil
}

func (s *memStore) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, name)
	return nil
}

func reps(addrs ...string) []Replica {
	var out []Replica
	for _, a := range addrs {
		out = append(out, Replica{Address: a, Zone: "az-a"})
	}
	return out
}

// demoTenants mirrors the local topology.
func demoTenants() map[string]*TenantConfig {
	app := func(dev, prod string) *AppConfig {
		return &AppConfig{Stages: map[string]*StageConfig{
			"dev":  {Replicas: reps("127.0.0.1:" + dev)},
			"prod": {Replicas: reps("127.0.0.1:" + prod)},
		}}
	}
	return map[string]*TenantConfig{
		"acme": {
			Apps: map[string]*AppConfig{"orders": app("9111", "9121"), "ledger": app("9211", "9221")},
			Domains: map[string]*DomainConfig{"shop.acme.localhost": {Stage: "prod", DefaultApp: "orders"},
				"rpc.acme.example": {Stage: "prod", DefaultApp: "ledger", DefaultAppMode: "all"}},
		},
		"globex": {
			Apps: map[string]*AppConfig{"billing": app("9311", "9321"), "shop": app("9411", "9421")},
		},
	}
}

func demoServices() map[string]*ServiceConfig {
	return map[string]*ServiceConfig{
		"build":  {Path: "/api/build/", Replicas: reps("127.0.0.1:9501")},
		"deploy": {Path: "/api/deploy/", Replicas: reps("127.0.0.1:9511")},
		"api":    {Path: "/api/", Replicas: reps("127.0.0.1:9521")},
	}
}

// newTestApp builds an App as Provision would, without Caddy.
func newTestApp(t testing.TB, tenants map[string]*TenantConfig, stages ...string) *App {
	t.Helper()
	if len(stages) == 0 {
		stages = []string{"dev", "prod"}
	}
	a := &App{Zone: "az-a", RuntimeDomain: "apps.localhost", PlatformDomain: "platform.localhost",
		Stages: stages, Tenants: tenants, Services: demoServices(),
		reg: new(Registry), store: &memStore{}, logger: zap.NewNop()}
	g, err := newGlobals(a.Zone, a.RuntimeDomain, a.PlatformDomain, a.Stages, a.Services)
	if err != nil {
		t.Fatal(err)
	}
	a.g = g
	snap, err := a.load()
	if err != nil {
		t.Fatal(err)
	}
	a.reg.cur.Store(snap)
	return a
}

// fleet returns n tenants named t000001... with one app "web" in every stage.
func fleet(n int, stages []string) map[string]*TenantConfig {
	out := make(map[string]*TenantConfig, n)
	for i := range n {
		st := map[string]*StageConfig{}
		for j, s := range stages {
			st[s] = &StageConfig{Replicas: []Replica{{Address: fmt.Sprintf("10.%d.%d.%d:8080", j, i/256%256, i%256), Zone: "az-a"}}}
		}
		out[fmt.Sprintf("t%06d", i)] = &TenantConfig{Apps: map[string]*AppConfig{"web": {Stages: st}}}
	}
	return out
}

func caddyCtx(t testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}
