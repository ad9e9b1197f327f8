package neo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/projectneo/caddy-neo/modules/zonelb"
	"go.uber.org/zap"
)

// Benchmarks of the registry, side by side (go test -run '^$' -bench . ./modules/neo/):
//
//   - BenchmarkRoute: per-request routing cost of neo_route (request
//     metrics on) with 10, 1,000, 10,000 and 100,000 tenants, for two request
//     mixes (benchMixes: the same requests for every fleet, and requests
//     spread over 1,024 random tenants of the fleet), the memory floor of the
//     spread mix (one plain Go map lookup), and the same fleets written as
//     plain Caddy (one site block, i.e. one host-matched route with a subroute
//     of path-matched app routes, per tenant and stage); then a table of the
//     ratios.
//   - BenchmarkSelection: lb_policy neo_zone's replica selection at 10 and
//     100,000 tenants, both mixes, side by side.
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

// benchHosts returns the hosts of k requests to random tenants of a fleet of
// n. With hot > 0 the tenants are drawn from the first hot tenants only (they
// exist in every fleet), so fleets of any size see the very same requests.
func benchHosts(n, k, hot int) []string {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	if hot > 0 {
		rng = rand.New(rand.NewPCG(uint64(hot), 7))
		n = hot
	}
	hosts := make([]string, k)
	for i := range hosts {
		t := fmt.Sprintf("t%06d", rng.IntN(n))
		hosts[i] = t + ".apps.localhost"
		if rng.IntN(2) == 0 {
			hosts[i] = t + "-dev.apps.localhost"
		}
	}
	return hosts
}

// freshRequests builds one request per host, each with its own Caddy request
// context (replacer, vars), as a server does for every request. The
// benchmarks build them anew every round: requests made once at set-up and
// kept would sit wherever the heap put them among the fleets' set-up
// garbage, and how scattered they are (not the routing) would then decide
// which run is faster.
func freshRequests(hosts []string) []*http.Request {
	reqs := make([]*http.Request, len(hosts))
	for i, host := range hosts {
		u, _ := url.ParseRequestURI("/web/items/42")
		r := &http.Request{Method: "GET", URL: u, RequestURI: "/web/items/42", Host: host, Header: http.Header{"Accept": {"*/*"}}}
		ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		reqs[i] = r.WithContext(ctx)
	}
	return reqs
}

// collect runs a garbage collection outside the timed batches. The
// side-by-side benchmarks turn the collector's pacing off while they run and
// collect every 16 rounds instead: a collection marks the whole heap, which
// here holds every fleet at once, and would otherwise land on whichever
// batch happens to be running (on 2 cores its mark worker takes one).
func collect(b *testing.B) {
	b.StopTimer()
	runtime.GC()
	b.StartTimer()
}

// sideBySide runs b.N rounds of the side-by-side benchmarks: each round runs
// every one of n runs once, in a new random order (no run always follows the
// same one: a run after a cache-cold one would start cold every time), with
// garbage collected every 16 rounds outside the timed work (collect).
func sideBySide(b *testing.B, n int, run func(k int)) {
	rng := rand.New(rand.NewPCG(1, 2))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for i := 0; i < b.N; i++ {
		if i%16 == 0 {
			collect(b)
		}
		for _, k := range rng.Perm(n) {
			run(k)
		}
	}
}

// timed runs f and returns total and fastest with f's duration added.
func timed(total, fastest time.Duration, f func()) (time.Duration, time.Duration) {
	t0 := time.Now()
	f()
	d := time.Since(t0)
	if fastest == 0 || d < fastest {
		fastest = d
	}
	return total + d, fastest
}

// benchRequests returns fresh requests to k random tenants (benchHosts).
func benchRequests(n, k, hot int) []*http.Request { return freshRequests(benchHosts(n, k, hot)) }

// The two request mixes of the routing benchmarks:
//   - same: 1,024 requests over the 10 tenants every fleet has. Only the
//     number of tenants in the registry differs between fleets: this is the
//     cost of routing as a function of the tenant count.
//   - spread: 1,024 requests over 1,024 random tenants of the fleet. The
//     working set grows with the fleet (up to 1,024 tenants' data, spread
//     over a heap of 100,000 tenants), so cache and TLB misses add the
//     memory hierarchy's cost; the `gomap` rows show that floor for one
//     plain Go map lookup per request over the same hosts.
var benchMixes = []struct {
	name string
	hot  int
}{{"same", 10}, {"spread", 0}}

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
	// The neo runs alternate side by side: each round routes one batch of
	// 1,024 requests per fleet and mix, in a new random order each round, so
	// that load on the machine falls on all fleets alike.
	b.Run("neo", func(b *testing.B) {
		type run struct {
			name  string
			h     *RouteHandler
			hosts []string
			d     time.Duration
			min   time.Duration
		}
		var runs []*run
		for _, mix := range benchMixes {
			for _, n := range sizes {
				a := benchApp(b, n)
				a.metrics = &metrics{} // as in production: request metrics on
				runs = append(runs, &run{name: fmt.Sprintf("neo/mix=%s/tenants=%d", mix.name, n),
					h: &RouteHandler{app: a, logger: zap.NewNop()}, hosts: benchHosts(n, 1024, mix.hot)})
			}
		}
		w := nopWriter{http.Header{}}
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		sideBySide(b, len(runs), func(k int) {
			r := runs[k]
			reqs := freshRequests(r.hosts)
			r.d, r.min = timed(r.d, r.min, func() {
				for _, q := range reqs {
					if err := r.h.ServeHTTP(w, q, terminal); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		if b.N > 1 {
			fleetMu.Lock()
			for _, r := range runs {
				results[r.name] = r.d / time.Duration(b.N*1024)
				results["min:"+r.name] = r.min / 1024
			}
			fleetMu.Unlock()
		}
	})
	// The memory floor of the spread mix: one Go map lookup per request,
	// over a map of the fleet's hosts, touching the entry found.
	for _, n := range sizes {
		name := fmt.Sprintf("gomap/mix=spread/tenants=%d", n)
		b.Run(name, func(b *testing.B) {
			type entry struct {
				tenant string
				hits   uint64
			}
			m := make(map[string]*entry, 2*n)
			for i := range n {
				t := fmt.Sprintf("t%06d", i)
				m[t+".apps.localhost"] = &entry{tenant: t}
				m[t+"-dev.apps.localhost"] = &entry{tenant: t}
			}
			reqs := benchRequests(n, 1024, 0)
			hosts := make([]string, len(reqs))
			for i, r := range reqs {
				hosts[i] = r.Host
			}
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m[hosts[i&1023]].hits++
			}
			record(b, name)
		})
	}
	for _, n := range sizes {
		name := fmt.Sprintf("caddy-sites/tenants=%d", n)
		b.Run(name, func(b *testing.B) {
			h := plainCaddy(b, n)
			reqs := benchRequests(n, 1024, 0)
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
		ns := func(k string) float64 { return float64(results[k].Nanoseconds()) }
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\nmean of all batches (min: fastest batch)\n")
		fmt.Fprintf(tw, "tenants\tneo same ns\tvs 10\tmin vs 10\tneo spread ns\tvs 10\tmin vs 10\tgomap spread ns\tvs 10\tplain Caddy ns\tplain / neo spread\t\n")
		for _, n := range sizes {
			same, spread := fmt.Sprintf("neo/mix=same/tenants=%d", n), fmt.Sprintf("neo/mix=spread/tenants=%d", n)
			gm, plain := fmt.Sprintf("gomap/mix=spread/tenants=%d", n), fmt.Sprintf("caddy-sites/tenants=%d", n)
			fmt.Fprintf(tw, "%d\t%.0f\t%.3fx\t%.3fx\t%.0f\t%.3fx\t%.3fx\t%.1f\t%.2fx\t%.0f\t%.1fx\t\n", n,
				ns(same), ns(same)/ns("neo/mix=same/tenants=10"), ns("min:"+same)/ns("min:neo/mix=same/tenants=10"),
				ns(spread), ns(spread)/ns("neo/mix=spread/tenants=10"), ns("min:"+spread)/ns("min:neo/mix=spread/tenants=10"),
				ns(gm), ns(gm)/ns("gomap/mix=spread/tenants=10"),
				ns(plain), ns(plain)/ns(spread))
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
				reqs := benchRequests(n, 1024, 0)
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

// BenchmarkSelection is the cost of choosing the replica, as the reverse
// proxy asks it: lb_policy neo_zone's Select on the route neo_route resolved
// (zone preference, health of each replica, the selection metric), for fleets
// of 10 and 100,000 tenants whose apps have three replicas (two in the local
// zone, one in another), in the two request mixes of BenchmarkRoute. The runs
// alternate side by side in batches of 1,024 selections; it fails on any
// allocation and prints the costs and their ratios.
func BenchmarkSelection(b *testing.B) {
	sizes := []int{10, 100000}
	if max := benchSizes()[len(benchSizes())-1]; max < 100000 {
		sizes[1] = max
	}
	type run struct {
		name  string
		h     *RouteHandler
		hosts []string
		reqs  []*http.Request
		ups   [][]*reverseproxy.Upstream
		d     time.Duration
		min   time.Duration
	}
	sel := &ZoneSelection{checks: zonelb.NewCheckerSet(zonelb.CheckConfig{})}
	w := nopWriter{http.Header{}}
	var runs []*run
	for _, n := range sizes {
		tenants := fleet(n, benchStages)
		for _, tc := range tenants {
			for _, sc := range tc.Apps["web"].Stages {
				a := strings.TrimSuffix(sc.Replicas[0].Address, ":8080")
				sc.Replicas = []Replica{{Address: a + ":8080", Zone: "az-a"}, {Address: a + ":8081", Zone: "az-a"}, {Address: a + ":8082", Zone: "az-b"}}
			}
		}
		h := &RouteHandler{app: newTestApp(b, tenants), logger: zap.NewNop()}
		for _, mix := range benchMixes {
			runs = append(runs, &run{name: fmt.Sprintf("%s/tenants=%d", mix.name, n), h: h, hosts: benchHosts(n, 1024, mix.hot)})
		}
	}
	// resolve routes fresh requests of r and gives each its upstreams, as
	// neo_route and `dynamic neo` do before the proxy asks for a replica
	// (anew every round, like freshRequests and for the same reason).
	resolve := func(r *run) {
		r.reqs, r.ups = r.reqs[:0], r.ups[:0]
		for _, q := range freshRequests(r.hosts) {
			if err := r.h.ServeHTTP(w, q, caddyhttp.HandlerFunc(func(_ http.ResponseWriter, q *http.Request) error {
				ups, _ := Upstreams{}.GetUpstreams(q)
				r.reqs, r.ups = append(r.reqs, q), append(r.ups, ups)
				return nil
			})); err != nil {
				b.Fatal(err)
			}
		}
	}
	batch := func(r *run) {
		for j, q := range r.reqs {
			if sel.Select(r.ups[j], q, w) == nil {
				b.Fatal("no replica selected")
			}
		}
	}
	for _, r := range runs {
		resolve(r)
		batch(r) // create the metric series
		if a := testing.AllocsPerRun(5, func() { batch(r) }); a != 0 {
			b.Fatalf("%s: %v allocations per batch of %d selections", r.name, a, len(r.reqs))
		}
	}
	runtime.GC()
	b.ResetTimer()
	sideBySide(b, len(runs), func(k int) {
		r := runs[k]
		resolve(r)
		r.d, r.min = timed(r.d, r.min, func() { batch(r) })
	})
	b.StopTimer()
	per := func(r *run) float64 { return float64(r.d.Nanoseconds()) / float64(b.N*len(r.reqs)) }
	// A run's fastest batch: other work on the machine only ever adds time,
	// so the minimum is the steadiest measure of the cost itself.
	mn := func(r *run) float64 { return float64(r.min.Nanoseconds()) / float64(len(r.reqs)) }
	for _, r := range runs {
		b.ReportMetric(per(r), "ns/select-"+r.name)
		b.ReportMetric(mn(r), "min-ns/select-"+r.name)
	}
	// runs: same@10, spread@10, same@max, spread@max
	b.ReportMetric(per(runs[2])/per(runs[0]), "ratio-same")
	b.ReportMetric(per(runs[3])/per(runs[1]), "ratio-spread")
	b.ReportMetric(mn(runs[2])/mn(runs[0]), "min-ratio-same")
	b.ReportMetric(mn(runs[3])/mn(runs[1]), "min-ratio-spread")
	b.ReportMetric(0, "allocs/select")
}
