package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

const loadTenants = 10000

// neoFleetConfig is a JSON config: an HTTP listener routing through the
// registry to backend, with n config tenants (app web in dev and prod).
func neoFleetConfig(admin, port int, backend string, n int) []byte {
	tenants := make(map[string]any, n)
	for i := range n {
		reps := map[string]any{"replicas": []any{map[string]any{"address": backend}}}
		tenants[fmt.Sprintf("t%06d", i)] = map[string]any{"apps": map[string]any{"web": map[string]any{"stages": map[string]any{"dev": reps, "prod": reps}}}}
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", admin)},
		"apps": map[string]any{
			"neo": map[string]any{"zone": "az-a", "tenants": tenants},
			"http": map[string]any{"servers": map[string]any{"srv": map[string]any{
				"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{map[string]any{"handle": []any{
					map[string]any{"handler": "neo_route"},
					map[string]any{"handler": "reverse_proxy", "dynamic_upstreams": map[string]any{"source": "neo"}},
				}}},
			}}},
		},
	}
	data, _ := json.Marshal(cfg)
	return data
}

// plainFleetConfig is the same fleet as plain Caddy: one route per tenant
// host (what one site block per tenant and stage adapts to), each proxying
// /web* to backend.
func plainFleetConfig(admin, port int, backend, changedBackend string, n int, changed int) []byte {
	routes := make([]any, 0, 2*n)
	for i := range n {
		b := backend
		if i == changed {
			b = changedBackend
		}
		for _, host := range []string{fmt.Sprintf("t%06d.apps.localhost", i), fmt.Sprintf("t%06d-dev.apps.localhost", i)} {
			routes = append(routes, map[string]any{
				"match": []any{map[string]any{"host": []string{host}}},
				"handle": []any{map[string]any{"handler": "subroute", "routes": []any{map[string]any{
					"match":  []any{map[string]any{"path": []string{"/web*"}}},
					"handle": []any{map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": b}}}},
				}}}},
				"terminal": true,
			})
		}
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", admin)},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv": map[string]any{
			"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
			"automatic_https": map[string]any{"disable": true},
			"routes":          routes,
		}}}},
	}
	data, _ := json.Marshal(cfg)
	return data
}

type loadResult struct{ ok, failed atomic.Int64 }

// load sends GETs to random hosts through proxyAddr until stop is closed
// (bounded by max requests per worker).
func load(proxyAddr string, hosts []string, workers int, stop <-chan struct{}, res *loadResult, failures *[]string, mu *sync.Mutex) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := harness.Client(proxyAddr, nil)
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				host := hosts[(i*7919+w*104729)%len(hosts)]
				resp, err := c.Get("http://" + host + "/web/x")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					res.failed.Add(1)
					mu.Lock()
					if len(*failures) < 10 {
						if err != nil {
							*failures = append(*failures, host+": "+err.Error())
						} else {
							*failures = append(*failures, fmt.Sprintf("%s: %d", host, resp.StatusCode))
						}
					}
					mu.Unlock()
					continue
				}
				res.ok.Add(1)
			}
		}()
	}
	return &wg
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// TestRegistryChangesUnderLoad: with 10,000 tenants loaded, 100 changes
// through the admin API under constant load fail no request. It also
// measures one admin change against a full POST /load of the equivalent
// plain-Caddy configuration (one route per tenant host), and logs both.
func TestRegistryChangesUnderLoad(t *testing.T) {
	ports, err := harness.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	backendA, backendB := replica(t, "a"), replica(t, "b")
	admin, port := ports[0], ports[1]
	inst := harness.Start(t, harness.Options{
		Config: string(neoFleetConfig(admin, port, backendA, loadTenants)), Adapter: "json",
		Admin: fmt.Sprintf("127.0.0.1:%d", admin), WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", port)},
	})
	proxy := fmt.Sprintf("127.0.0.1:%d", port)
	put := func(backend string) time.Duration {
		body := fmt.Sprintf(`{"apps":{"web":{"stages":{"prod":{"replicas":[{"address":%q}]},"dev":{"replicas":[{"address":%q}]}}}}}`, backend, backend)
		start := time.Now()
		st, out, err := inst.Admin("PUT", "/neo/tenants/runtime-one", body)
		d := time.Since(start)
		if err != nil || (st != 200 && st != 201) {
			t.Fatalf("PUT: %d %s %v", st, out, err)
		}
		return d
	}
	put(backendA)
	hosts := []string{"runtime-one.apps.localhost", "runtime-one-dev.apps.localhost"}
	for i := 0; i < loadTenants; i += 97 {
		hosts = append(hosts, fmt.Sprintf("t%06d.apps.localhost", i), fmt.Sprintf("t%06d-dev.apps.localhost", i))
	}
	var res loadResult
	var failures []string
	var mu sync.Mutex
	stop := make(chan struct{})
	wg := load(proxy, hosts, 4, stop, &res, &failures, &mu)
	time.Sleep(300 * time.Millisecond)
	var changes []time.Duration
	for i := range 100 {
		b := backendA
		if i%2 == 0 {
			b = backendB
		}
		changes = append(changes, put(b))
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if res.failed.Load() != 0 || res.ok.Load() == 0 {
		t.Fatalf("during 100 admin changes: %d requests ok, %d failed: %v", res.ok.Load(), res.failed.Load(), failures)
	}
	neoChange := median(changes)
	t.Logf("neo: 100 admin changes at %d tenants under load: %d requests, 0 failed; median change %s (file store, fsync)", loadTenants, res.ok.Load(), neoChange)
	inst.Stop()

	if os.Getenv("NEO_BENCH") == "" {
		t.Log("set NEO_BENCH=1 to compare with a POST /load of the equivalent plain-Caddy config (takes minutes)")
		return
	}
	// Plain Caddy: the same fleet as routes; one change = POST /load of the whole config.
	admin2, port2 := ports[2], ports[3]
	// Start small (a 20,000-route config takes longer to start than the
	// harness waits), then load the fleet: that first POST /load is the
	// initial load; the next ones are one-tenant changes.
	plain := harness.Start(t, harness.Options{
		Config: string(plainFleetConfig(admin2, port2, backendA, backendB, 1, -1)), Adapter: "json",
		Admin: fmt.Sprintf("127.0.0.1:%d", admin2), WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", port2)},
	})
	postLoad := func(body []byte) time.Duration {
		start := time.Now()
		c := &http.Client{Timeout: 5 * time.Minute}
		resp, err := c.Post(plain.AdminURL("/load"), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /load: %d %s", resp.StatusCode, out)
		}
		return time.Since(start)
	}
	cfg := plainFleetConfig(admin2, port2, backendA, backendB, loadTenants, -1)
	initial := postLoad(cfg)
	var res2 loadResult
	var failures2 []string
	stop2 := make(chan struct{})
	hosts2 := hosts[2:]
	wg2 := load(fmt.Sprintf("127.0.0.1:%d", port2), hosts2, 4, stop2, &res2, &failures2, &mu)
	var loads []time.Duration
	for i := range 3 {
		loads = append(loads, postLoad(plainFleetConfig(admin2, port2, backendA, backendB, loadTenants, i)))
	}
	close(stop2)
	wg2.Wait()
	plainLoad := median(loads)
	t.Logf("plain Caddy: initial POST /load of %d tenants (%d routes, %d KiB JSON) %s; one-tenant change = POST /load: median %s over 3; under load %d ok, %d failed %v",
		loadTenants, 2*loadTenants, len(cfg)/1024, initial, plainLoad, res2.ok.Load(), res2.failed.Load(), failures2)
	t.Logf("one tenant change: neo admin API %s vs plain Caddy POST /load %s: %.0fx faster", neoChange, plainLoad, float64(plainLoad)/float64(neoChange))
}
