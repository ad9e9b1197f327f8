package neo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Benchmarks of the registry, side by side (go test -run '^$' -bench . ./modules/neo/):
//
//   - BenchmarkRoute: per-request routing cost of neo_route with 10, 1,000,
//     10,000 and 100,000 tenants, and of the same fleets written as plain
//     Caddy (one site block, i.e. one host-matched route with a subroute of
//     path-matched app routes, per tenant and stage), then a table of the
//     ratios. Requests cycle over 1,024 random tenants of the fleet.
//   - BenchmarkResolve: the registry lookup alone, hot (8 tenants) and cold
//     (1,024 random tenants) request mixes.
//   - BenchmarkChange: one tenant change (Put) at 10,000 tenants.
//   - BenchmarkMemory: registry bytes per tenant.
//
// NEO_BENCH_MAX_TENANTS bounds the fleets (default 100000).

var benchStages = []string{"dev", "prod"}

func benchSizes() []int {
	sizes := []int{10, 1000, 10000, 100000}
	maxN := 100000
	if v := os.Getenv("NEO_BENCH_MAX_TENANTS"); v != "" {
		fmt.Sscan(v, &maxN)
	}
	var out []int
	for _, n := range sizes {
		if n <= maxN {
			out = append(out, n)
		}
	}
	return out
}

// benchRequests returns k requests to random tenants of a fleet of n, each
// with its own Caddy request context (replacer, vars), reused across iterations.
func benchRequests(n, k int) []*http.Request {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	reqs := make([]*http.Request, k)
	for i := range reqs {
		t := fmt.Sprintf("t%06d", rng.IntN(n))
		host := t + ".apps.localhost"
		if rng.IntN(2) == 0 {
			host = t + "-dev.apps.localhost"
		}
		u, _ := url.ParseRequestURI("/web/items/42")
		r := &http.Request{Method: "GET", URL: u, RequestURI: "/web/items/42", Host: host, Header: http.Header{"Accept": {"*/*"}}}
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		reqs[i] = r.WithContext(ctx)
	}
	return reqs
}

var (
	fleetMu    sync.Mutex
	fleetCache = map[int]*App{}
	results    = map[string]time.Duration{}
)

func benchApp(b *testing.B, n int) *App {
	fleetMu.Lock()
	defer fleetMu.Unlock()
	if a, ok := fleetCache[n]; ok {
		return a
	}
	a := newTestApp(b, fleet(n, benchStages))
	fleetCache[n] = a
	return a
}

type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header       { return w.h }
func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriter) WriteHeader(int)             {}

var terminal = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// plainCaddy compiles the fleet as plain Caddy routes, as the Caddyfile
// adapter does for one site block per tenant host:
// match host → subroute { match path /<app>/* → handler }.
func plainCaddy(b *testing.B, n int) caddyhttp.Handler {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	routes := make(caddyhttp.RouteList, 0, n*len(benchStages))
	for i := range n {
		t := fmt.Sprintf("t%06d", i)
		for si := range benchStages {
			host := t + ".apps.localhost"
			if si < len(benchStages)-1 {
				host = t + "-" + benchStages[si] + ".apps.localhost"
			}
			sub := &caddyhttp.Subroute{Routes: caddyhttp.RouteList{{
				MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchPath{"/web/*", "/web"}}},
				Handlers:    []caddyhttp.MiddlewareHandler{nopHandler{}},
			}}}
			if err := sub.Provision(ctx); err != nil {
				b.Fatal(err)
			}
			routes = append(routes, caddyhttp.Route{
				MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchHost{host}}},
				Handlers:    []caddyhttp.MiddlewareHandler{sub},
				Terminal:    true,
			})
		}
	}
	if err := routes.ProvisionHandlers(ctx, nil); err != nil {
		b.Fatal(err)
	}
	return routes.Compile(terminal)
}

type nopHandler struct{}

func (nopHandler) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error { return nil }

func record(b *testing.B, name string) {
	if b.N > 1 {
		fleetMu.Lock()
		results[name] = b.Elapsed() / time.Duration(b.N)
		fleetMu.Unlock()
	}
}

func BenchmarkRoute(b *testing.B) {
	sizes := benchSizes()
	// Build every fleet first, so that all neo runs share one heap: the Go
	// GC's work per allocated byte grows with the live heap (from a tiny
	// heap to a large one), which would otherwise be mistaken for lookup cost.
	for _, n := range sizes {
		benchApp(b, n)
	}
	for _, n := range sizes {
		name := fmt.Sprintf("neo/tenants=%d", n)
		b.Run(name, func(b *testing.B) {
			a := benchApp(b, n)
			runtime.GC()
			h := &RouteHandler{app: a, logger: zap.NewNop()}
			reqs := benchRequests(n, 1024)
			w := nopWriter{http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i&1023 == 0 {
					// Fresh replacers, as every real request has (Map adds providers).
					b.StopTimer()
					for j, r := range reqs {
						ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
						reqs[j] = r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
					}
					b.StartTimer()
				}
				if err := h.ServeHTTP(w, reqs[i&1023], terminal); err != nil {
					b.Fatal(err)
				}
			}
			record(b, name)
		})
	}
	for _, n := range sizes {
		name := fmt.Sprintf("caddy-sites/tenants=%d", n)
		b.Run(name, func(b *testing.B) {
			h := plainCaddy(b, n)
			reqs := benchRequests(n, 1024)
			w := nopWriter{http.Header{}}
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := h.ServeHTTP(w, reqs[i&1023]); err != nil {
					b.Fatal(err)
				}
			}
			record(b, name)
		})
	}
	b.Run("summary", func(b *testing.B) {
		if b.N != 1 {
			return
		}
		fleetMu.Lock()
		defer fleetMu.Unlock()
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\ntenants\tneo ns/req\tneo vs 10 tenants\tplain Caddy ns/req\tplain / neo\t\n")
		base := results["neo/tenants=10"]
		for _, n := range sizes {
			neo := results[fmt.Sprintf("neo/tenants=%d", n)]
			plain := results[fmt.Sprintf("caddy-sites/tenants=%d", n)]
			fmt.Fprintf(tw, "%d\t%d\t%.3fx\t%d\t%.1fx\t\n", n, neo.Nanoseconds(), float64(neo)/float64(base), plain.Nanoseconds(), float64(plain)/float64(neo))
		}
		tw.Flush()
	})
}

// BenchmarkResolve is the registry's share of the routing cost: host and
// path resolution on one snapshot (no allocation, no GC). mix is the number
// of distinct random tenants the requests cycle over: with 8 the data stays
// in cache and the algorithmic cost shows; with 1,024 spread over a large
// fleet, cache and TLB misses add the memory hierarchy's cost.
func BenchmarkResolve(b *testing.B) {
	sizes := benchSizes()
	for _, n := range sizes {
		benchApp(b, n)
	}
	for _, mix := range []int{8, 1024} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("mix=%d/tenants=%d", mix, n), func(b *testing.B) {
				s := benchApp(b, n).reg.Snapshot()
				reqs := benchRequests(n, 1024)
				hosts := make([]string, len(reqs))
				for i := range reqs {
					hosts[i] = reqs[i%mix].Host
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, miss := s.Resolve(hosts[i&1023], "/web/items/42"); miss != "" {
						b.Fatal(miss)
					}
				}
			})
		}
	}
}

// BenchmarkChange measures one tenant change (validate, copy-on-write,
// publish; in-memory store) with 10,000 tenants loaded.
func BenchmarkChange(b *testing.B) {
	a := benchApp(b, 10000)
	tc := &TenantConfig{Apps: map[string]*AppConfig{"web": {Stages: map[string]*StageConfig{
		"prod": {Replicas: reps("10.9.9.9:8080")}, "dev": {Replicas: reps("10.9.9.8:8080")},
	}}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Put(fmt.Sprintf("n%06d", i%10000), tc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemory reports the registry's heap bytes per tenant (one app in
// two stages, one replica each), configuration objects included.
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		if n > benchSizes()[len(benchSizes())-1] {
			continue
		}
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				a := newTestApp(b, fleet(n, benchStages))
				a.Tenants = nil // the snapshot alone keeps what it needs
				runtime.GC()
				runtime.ReadMemStats(&after)
				per := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				b.ReportMetric(per, "bytes/tenant")
				runtime.KeepAlive(a)
			}
		})
	}
}
