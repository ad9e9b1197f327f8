package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/mholt/caddy-ratelimit"
)

// Benchmarks, neo_rate_limit against caddy-ratelimit v0.1.0 (the limiter the
// edge used before), both provisioned by Caddy from one JSON config and
// called as the server calls a handler, side by side in one run:
//
//	go test -run '^$' -bench . -benchtime 300x ./modules/ratelimit/
//
//   - BenchmarkLimiters/returning: 2,000 client addresses, one request
//     each per batch (1,200 events per minute: none is limited before
//     batch 1,200, so keep -benchtime below 1200x).
//   - BenchmarkLimiters/new: 1,000 addresses never seen before per batch
//     (a flood from many addresses; 20 events per minute, so that
//     caddy-ratelimit's rings stay small enough to run).
//   - BenchmarkMemoryPerKey: live heap per key after 20,000 keys, at 10 and
//     at 1,200 events per window.
//
// Each reports ns/req and allocs/req for both and the ratios
// (caddy-ratelimit / neo: above 1, neo_rate_limit is cheaper).

// loadLimiters provisions the handlers of routes (one handler each) in a
// running Caddy and returns them.
func loadLimiters(b *testing.B, handlers ...string) []caddyhttp.MiddlewareHandler {
	b.Helper()
	routes := ""
	for i, h := range handlers {
		if i > 0 {
			routes += ","
		}
		routes += `{"handle":[` + h + `]}`
	}
	cfg := `{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},
		"apps":{"http":{"servers":{"bench":{"listen":["127.0.0.1:0"],"routes":[` + routes + `]}}}}}`
	if err := caddy.Load([]byte(cfg), true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	var out []caddyhttp.MiddlewareHandler
	for _, r := range app.(*caddyhttp.App).Servers["bench"].Routes {
		out = append(out, r.Handlers[0])
	}
	return out
}

func neoZone(name string, events int) string {
	return fmt.Sprintf(`{"handler":"neo_rate_limit","zones":{%q:{"key":"{http.request.remote.host}","events":%d,"window":"1m","memory":67108864}}}`, name, events)
}

func caddyZone(name string, events int) string {
	return fmt.Sprintf(`{"handler":"rate_limit","rate_limits":{%q:{"key":"{http.request.remote.host}","max_events":%d,"window":"1m"}}}`, name, events)
}

// benchRequest is a request as the server hands it to handlers.
func benchRequest(remote string) *http.Request {
	r := httptest.NewRequest("GET", "http://acme-dev.apps.test/orders/", nil)
	r.RemoteAddr = remote
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil)
}

func address(i int) string {
	return fmt.Sprintf("10.%d.%d.%d:40000", byte(i>>16), byte(i>>8), byte(i))
}

var okNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header       { return w.h }
func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriter) WriteHeader(int)             {}

func BenchmarkLimiters(b *testing.B) {
	b.Run("returning", func(b *testing.B) {
		const clients = 2000
		if b.N >= 1200 {
			b.Skip("each client would pass its limit of 1200: run with -benchtime below 1200x")
		}
		hs := loadLimiters(b, neoZone("bench_ret", 1200), caddyZone("bench_ret_rl", 1200))
		reqs := make([]*http.Request, clients)
		for i := range reqs {
			reqs[i] = benchRequest(address(i))
		}
		compare(b, hs, func(int) []*http.Request { return reqs })
	})
	b.Run("new", func(b *testing.B) {
		const perBatch = 1000
		hs := loadLimiters(b, neoZone("bench_new", 20), caddyZone("bench_new_rl", 20))
		next := 0
		// Each limiter sees every address once: the same fresh batch goes
		// to both.
		var batch []*http.Request
		compare(b, hs, func(k int) []*http.Request {
			if k == 0 {
				batch = batch[:0]
				for range perBatch {
					batch = append(batch, benchRequest(address(next)))
					next++
				}
			}
			return batch
		})
	})
}

// compare runs batches of requests (reqs(k) for limiter k) through the two
// limiters, alternating in random order, and reports each one's cost per
// request, allocations per request and the ratios.
func compare(b *testing.B, hs []caddyhttp.MiddlewareHandler, reqs func(k int) []*http.Request) {
	w := nopWriter{http.Header{}}
	names := []string{"neo", "caddyrl"}
	var d [2]time.Duration
	var allocs [2]uint64
	var n [2]int
	var ms runtime.MemStats
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for range b.N {
		order := []int{0, 1}
		if rng.IntN(2) == 1 {
			order = []int{1, 0}
		}
		if order[0] == 1 {
			reqs(0) // fresh batches are made for k == 0 first
		}
		for _, k := range order {
			batch := reqs(k)
			runtime.ReadMemStats(&ms)
			a0 := ms.Mallocs
			t0 := time.Now()
			for _, r := range batch {
				if err := hs[k].ServeHTTP(w, r, okNext); err != nil {
					b.Fatalf("%s: %v", names[k], err)
				}
			}
			d[k] += time.Since(t0)
			runtime.ReadMemStats(&ms)
			allocs[k] += ms.Mallocs - a0
			n[k] += len(batch)
		}
	}
	b.StopTimer()
	per := func(k int) float64 { return float64(d[k].Nanoseconds()) / float64(n[k]) }
	al := func(k int) float64 { return float64(allocs[k]) / float64(n[k]) }
	for k, name := range names {
		b.ReportMetric(per(k), "ns/req-"+name)
		b.ReportMetric(al(k), "allocs/req-"+name)
	}
	b.ReportMetric(per(1)/per(0), "ratio-ns")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkMemoryPerKey measures the live heap each limiter holds per key
// (once, whatever b.N: it fills two zones with 20,000 keys each).
func BenchmarkMemoryPerKey(b *testing.B) {
	const keys = 20000
	for _, events := range []int{10, 1200} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			var perKey [2]float64
			for i := range b.N {
				if i > 0 {
					continue
				}
				hs := loadLimiters(b, neoZone(fmt.Sprintf("mem_%d", events), events), caddyZone(fmt.Sprintf("mem_rl_%d", events), events))
				w := nopWriter{http.Header{}}
				for k, h := range hs {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					for i := range keys {
						// A request per key, dropped after it: only the
						// limiter's state stays on the heap.
						if err := h.ServeHTTP(w, benchRequest(address(i)), okNext); err != nil {
							b.Fatal(err)
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					perKey[k] = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / keys
				}
				_ = caddy.Stop()
			}
			b.ReportMetric(perKey[0], "B/key-neo")
			b.ReportMetric(perKey[1], "B/key-caddyrl")
			b.ReportMetric(perKey[1]/perKey[0], "ratio-bytes")
			b.ReportMetric(0, "ns/op")
		})
	}
}
