package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "registry",
		Description: "end to end through the proxy: plain reverse_proxy (1 site) vs neo_route at 10 and 10,000 tenants vs plain Caddy with 1,000 site blocks",
		Setup:       setupRegistry,
	})
}

// registryConfig is a JSON config with an HTTP server per entry of servers.
func registryConfig(admin int, apps map[string]any, servers map[string]any) string {
	cfg := map[string]any{
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", admin)},
		"apps":  apps,
	}
	apps["http"] = map[string]any{"servers": servers}
	data, _ := json.Marshal(cfg)
	return string(data)
}

func httpServer(port int, routes ...any) map[string]any {
	return map[string]any{
		"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
		"automatic_https": map[string]any{"disable": true},
		"routes":          routes,
	}
}

func neoApp(n int, replica string) map[string]any {
	tenants := make(map[string]any, n)
	reps := map[string]any{"replicas": []any{map[string]any{"address": replica}}}
	for i := range n {
		tenants[fmt.Sprintf("t%06d", i)] = map[string]any{"apps": map[string]any{"web": map[string]any{"stages": map[string]any{"dev": reps, "prod": reps}}}}
	}
	return map[string]any{"zone": "az-a", "tenants": tenants, "store": map[string]any{"module": "file"}}
}

var neoRoute = map[string]any{"handle": []any{
	map[string]any{"handler": "neo_route"},
	map[string]any{"handler": "reverse_proxy", "dynamic_upstreams": map[string]any{"source": "neo"},
		// Zone-aware per-tenant round robin, as in the role Caddyfiles.
		"load_balancing": map[string]any{"selection_policy": map[string]any{"policy": "neo_zone"}}},
}}

func proxyTo(replica string) map[string]any {
	return map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": replica}}}
}

// siteRoutes is what n Caddyfile site blocks (one per tenant host) adapt to.
func siteRoutes(n int, replica string) []any {
	routes := make([]any, 0, 2*n)
	for i := range n {
		for _, host := range []string{fmt.Sprintf("t%06d.apps.localhost", i), fmt.Sprintf("t%06d-dev.apps.localhost", i)} {
			routes = append(routes, map[string]any{
				"match": []any{map[string]any{"host": []string{host}}},
				"handle": []any{map[string]any{"handler": "subroute", "routes": []any{map[string]any{
					"match":  []any{map[string]any{"path": []string{"/web*"}}},
					"handle": []any{proxyTo(replica)},
				}}}},
				"terminal": true,
			})
		}
	}
	return routes
}

// replicaBody is the replica's answer: about the size of a small JSON API
// response.
var replicaBody = `{"id":42,"name":"item 42","price":{"amount":1999,"currency":"EUR"},"tags":["a","b","c"],"stock":{"az-a":12,"az-b":7},"updated":"2026-11-30T10:00:00Z","links":{"self":"/web/items/42"}}`

// hostTargets returns requests to random tenant hosts of a fleet of n.
func hostTargets(port, n int) []vegeta.Target {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	var ts []vegeta.Target
	for range 256 {
		t := fmt.Sprintf("t%06d", rng.IntN(n))
		host := t + ".apps.localhost"
		if rng.IntN(2) == 0 {
			host = t + "-dev.apps.localhost"
		}
		ts = append(ts, vegeta.Target{Method: "GET", URL: fmt.Sprintf("http://127.0.0.1:%d/web/items?id=42", port), Header: http.Header{"Host": {host}}})
	}
	return ts
}

func setupRegistry(context.Context) ([]Variant, func(), error) {
	ports, err := harness.FreePorts(8)
	if err != nil {
		return nil, nil, err
	}
	admin0, admin1, admin2, echoPort, plain1, neoBig, plainSites, neoSmall := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
	replica := fmt.Sprintf("127.0.0.1:%d", echoPort)
	// The replica runs in a process of its own, so that every variant has
	// the same shape: one proxy process, then the replica's process.
	rep := registryConfig(admin0, map[string]any{}, map[string]any{
		// The replica answers the same fixed body to every variant, so that
		// the variants differ only in the proxy's work (an echo replica
		// would report neo's extra Neo-* headers and do more work for it).
		"echo": httpServer(echoPort, map[string]any{"handle": []any{map[string]any{"handler": "static_response", "status_code": 200,
			"headers": map[string]any{"Content-Type": []string{"application/json"}}, "body": replicaBody}}}),
	})
	inst0, err := harness.StartProcess(harness.Options{
		Config: rep, Adapter: "json", Admin: fmt.Sprintf("127.0.0.1:%d", admin0), WaitFor: []string{replica},
	})
	if err != nil {
		return nil, nil, err
	}
	big := registryConfig(admin1, map[string]any{"neo": neoApp(10000, replica)}, map[string]any{
		"plain1": httpServer(plain1, map[string]any{"handle": []any{proxyTo(replica)}}),
		"neo":    httpServer(neoBig, neoRoute),
		"sites":  httpServer(plainSites, siteRoutes(1000, replica)...),
	})
	inst1, err := harness.StartProcess(harness.Options{
		Config: big, Adapter: "json", Admin: fmt.Sprintf("127.0.0.1:%d", admin1),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", plain1), fmt.Sprintf("127.0.0.1:%d", neoBig), fmt.Sprintf("127.0.0.1:%d", plainSites)},
	})
	if err != nil {
		inst0.Stop()
		return nil, nil, err
	}
	small := registryConfig(admin2, map[string]any{"neo": neoApp(10, replica)}, map[string]any{"neo": httpServer(neoSmall, neoRoute)})
	inst2, err := harness.StartProcess(harness.Options{
		Config: small, Adapter: "json", Admin: fmt.Sprintf("127.0.0.1:%d", admin2),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", neoSmall)},
	})
	if err != nil {
		inst0.Stop()
		inst1.Stop()
		return nil, nil, err
	}
	return []Variant{
			// The same requests (hosts, paths) for every variant.
			{Name: "caddy reverse_proxy, 1 site", Targets: hostTargets(plain1, 10)},
			{Name: "neo_route, 10 tenants", Targets: hostTargets(neoSmall, 10)},
			{Name: "neo_route, 10,000 tenants", Targets: hostTargets(neoBig, 10000)},
			{Name: "caddy, 1,000 site blocks", Targets: hostTargets(plainSites, 1000)},
		}, func() {
			inst2.Stop()
			inst1.Stop()
			inst0.Stop()
		}, nil
}
