package wafaccel

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	txhttp "github.com/corazawaf/coraza/v3/http"

	"github.com/projectneo/caddy-neo/internal/wafbench"
	_ "github.com/projectneo/caddy-neo/internal/wafcontent" // neoContent, in wafbench.Directives
)

// newProductionWAF builds the production WAF (wafbench.Directives), with
// rule skipping when skip is set.
func newProductionWAF(tb testing.TB, skip bool) coraza.WAF {
	tb.Helper()
	d := wafbench.Directives("", "")
	if skip {
		d = wafbench.Directives(SkipDirectivesBefore, SkipDirectivesAfter)
	}
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(d))
	if err != nil {
		tb.Fatal(err)
	}
	return waf
}

func newProductionHandler(tb testing.TB) http.Handler {
	return newProductionHandlerSkip(tb, false)
}

func newProductionHandlerSkip(tb testing.TB, skip bool) http.Handler {
	tb.Helper()
	waf := newProductionWAF(tb, skip)
	return txhttp.WrapHandler(waf, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
}

// scenario is one benchmark workload: a list of requests sent in turn, and
// the statuses the WAF must answer them with.
type scenario struct {
	name  string
	reqs  func() []*http.Request
	codes []int
}

func jsonPOST(path, body string) *http.Request {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", wafbench.UserAgent)
	r.Header.Set("Accept", "application/json")
	return r
}

func scenarios() []scenario {
	body2k := wafbench.JSON2KB()
	mp, mpType := wafbench.Multipart1MiB()
	attacks := wafbench.AttackPaths()
	return []scenario{
		{name: "json_2KB_POST", reqs: func() []*http.Request { return []*http.Request{jsonPOST("/api/customers", body2k)} }, codes: []int{200}},
		{name: "json_200B_POST", reqs: func() []*http.Request { return []*http.Request{jsonPOST("/api/orders", wafbench.JSON200B)} }, codes: []int{200}},
		{name: "GET_query", reqs: func() []*http.Request {
			r := httptest.NewRequest("GET", wafbench.GETQuery, nil)
			r.Header.Set("User-Agent", wafbench.UserAgent)
			r.Header.Set("Accept", "application/json")
			return []*http.Request{r}
		}, codes: []int{200}},
		{name: "multipart_1MiB", reqs: func() []*http.Request {
			r := httptest.NewRequest("POST", "/upload", bytes.NewReader(mp))
			r.Header.Set("Content-Type", mpType)
			r.Header.Set("User-Agent", wafbench.UserAgent)
			return []*http.Request{r}
		}, codes: []int{200}},
		{name: "attack_mix_50", reqs: func() []*http.Request {
			rs := make([]*http.Request, len(attacks))
			for i, a := range attacks {
				rs[i] = httptest.NewRequest("GET", a, nil)
				rs[i].Header.Set("User-Agent", wafbench.UserAgent)
			}
			return rs
		}},
	}
}

// serve sends the scenario's requests and returns the statuses.
func serve(h http.Handler, s scenario) []int {
	reqs := s.reqs()
	codes := make([]int, len(reqs))
	for i, r := range reqs {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		codes[i] = rec.Code
	}
	return codes
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScenarioVerdicts checks that the benchmark workloads get the same
// statuses from stock Coraza, the accelerated WAF and the accelerated WAF
// with rule skipping: benign ones pass, and every request of the attack mix
// is blocked.
func TestScenarioVerdicts(t *testing.T) {
	var stock http.Handler
	withCorazaRx(t, func() { stock = newProductionHandler(t) })
	accel := newProductionHandler(t)
	skip := newProductionHandlerSkip(t, true)
	for _, s := range scenarios() {
		want := serve(stock, s)
		got := serve(accel, s)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: accelerated %v, coraza %v", s.name, got, want)
		}
		if got := serve(skip, s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: accelerated with skipping %v, coraza %v", s.name, got, want)
		}
		if s.codes != nil && fmt.Sprint(want) != fmt.Sprint(s.codes) {
			t.Errorf("%s: got %v, want %v", s.name, want, s.codes)
		}
		if s.codes == nil {
			for i, c := range want {
				if c != http.StatusForbidden {
					t.Errorf("%s: attack %q answered %d", s.name, wafbench.AttackPaths()[i], c)
				}
			}
		}
	}
}

// BenchmarkWAF runs every workload through stock Coraza (its own @rx) and
// through the accelerated WAF, side by side, and prints the ratios. One op
// is one request (the attack mix counts its 50 requests as 50 ops).
// cpu-ms/req is the process CPU time (all threads, GC included) per request.
//
//	go test -run XXX -bench WAF -benchtime 2s -count 1 ./modules/wafaccel/
func BenchmarkWAF(b *testing.B) {
	var stock http.Handler
	withCorazaRx(b, func() { stock = newProductionHandler(b) })
	accel := newProductionHandler(b)
	skip := newProductionHandlerSkip(b, true)
	type result struct{ ns, cpu float64 }
	for _, s := range scenarios() {
		res := map[string]result{}
		for _, mode := range []struct {
			name string
			h    http.Handler
		}{{"coraza", stock}, {"accel", accel}, {"skip", skip}} {
			b.Run(s.name+"/"+mode.name, func(b *testing.B) {
				ns, cpu := measure(b, mode.h, s)
				res[mode.name] = result{ns, cpu}
			})
		}
		if c, a, k := res["coraza"], res["accel"], res["skip"]; c.ns > 0 && a.ns > 0 && k.ns > 0 {
			fmt.Printf("RATIO %-16s coraza %8.3f ms/req (cpu %8.3f ms)  accel %8.3f ms/req (cpu %8.3f ms)  speed-up x%.2f (cpu x%.2f)  accel+skip %8.3f ms/req (cpu %8.3f ms)  speed-up x%.2f (cpu x%.2f)\n",
				s.name, c.ns/1e6, c.cpu/1e6, a.ns/1e6, a.cpu/1e6, c.ns/a.ns, c.cpu/a.cpu, k.ns/1e6, k.cpu/1e6, c.ns/k.ns, c.cpu/k.cpu)
		}
	}
}

// measure serves the scenario b.N times through h (after one warm-up),
// reports wall time, process CPU (all threads, GC included) and throughput
// per request, and returns the wall and CPU nanoseconds per request.
func measure(b *testing.B, h http.Handler, s scenario) (ns, cpu float64) {
	n := len(s.reqs())
	serve(h, s) // warm up
	b.ResetTimer()
	c0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		serve(h, s)
	}
	wall, c := time.Since(t0), cpuTime()-c0
	b.StopTimer()
	ops := float64(b.N * n)
	b.ReportMetric(float64(wall.Nanoseconds())/ops, "ns/req")
	b.ReportMetric(float64(c.Nanoseconds())/ops/1e6, "cpu-ms/req")
	b.ReportMetric(ops/wall.Seconds(), "req/s")
	return float64(wall.Nanoseconds()) / ops, float64(c.Nanoseconds()) / ops
}

// TestPrefilterReachOnJSON guards the acceleration where it matters most:
// on the 2 KB JSON POST, most @rx evaluations must be decided by the
// prefilter without running the regex engine.
func TestPrefilterReachOnJSON(t *testing.T) {
	h := newProductionHandler(t)
	s := scenarios()[0]
	countStats = true
	defer func() { countStats = false }()
	calls0, skipped0 := rxCalls.Load(), rxSkipped.Load()
	serve(h, s)
	calls, skipped := rxCalls.Load()-calls0, rxSkipped.Load()-skipped0
	t.Logf("%s: %d of %d @rx evaluations decided by the prefilter (%.1f%%)", s.name, skipped, calls, 100*float64(skipped)/float64(calls))
	if calls < 1000 || skipped*100 < calls*85 {
		t.Errorf("prefilter decided %d of %d evaluations, want at least 85%%", skipped, calls)
	}
}

// variedGET is a benign GET whose query values differ on every request (no
// two requests share an ARGS, QUERY_STRING or REQUEST_URI text), for the
// verdict cache's miss path.
func variedGET() scenario {
	var n atomic.Uint64
	words := []string{"blue", "running", "shoes", "red", "jacket", "wool", "summer", "trail", "kids", "size"}
	return scenario{name: "GET_varied", reqs: func() []*http.Request {
		i := n.Add(1)
		q := fmt.Sprintf("/api/search?q=%s+%s+%d&page=%d&sort=price_desc&size=%d",
			words[i%10], words[(i/10)%10], i, i%7+1, 36+i%12)
		r := httptest.NewRequest("GET", q, nil)
		r.Header.Set("User-Agent", wafbench.UserAgent)
		r.Header.Set("Accept", "application/json")
		return []*http.Request{r}
	}, codes: []int{200}}
}

// variedJSON is the 2 KB JSON POST with values that differ on every request
// (the ARGS text never repeats).
func variedJSON() scenario {
	var n atomic.Uint64
	return scenario{name: "json_2KB_varied", reqs: func() []*http.Request {
		i := n.Add(1)
		var b strings.Builder
		b.WriteString("[")
		for k := 0; k < 25; k++ {
			if k > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d-%02d","email":"c%d@example.com","plan":"pro","active":true}`, i*100+uint64(k), i, k, i*31+uint64(k))
		}
		b.WriteString("]")
		return []*http.Request{jsonPOST("/api/customers", b.String())}
	}, codes: []int{200}}
}

// BenchmarkSkipVerdictCache runs the workloads through one WAF with rule
// skipping, with the verdict cache off and on, side by side (two rounds,
// alternating), and prints the ratios. GET_varied never repeats a query,
// json_2KB_varied never repeats a body.
//
//	go test -run XXX -bench SkipVerdictCache -benchtime 400x ./modules/wafaccel/
func BenchmarkSkipVerdictCache(b *testing.B) {
	h := newProductionHandlerSkip(b, true)
	defer verdictCacheOn.Store(true)
	var list []scenario
	for _, s := range scenarios() {
		if s.name != "multipart_1MiB" {
			list = append(list, s)
		}
	}
	list = append(list, variedGET(), variedJSON())
	for _, s := range list {
		cpu := map[bool]float64{}
		ns := map[bool]float64{}
		for round := 0; round < 2; round++ {
			for _, on := range []bool{false, true} {
				name := s.name + "/cache-off"
				if on {
					name = s.name + "/cache-on"
				}
				var lastCPU, lastNS float64 // b.Run may call the function more than once: keep the last
				b.Run(name, func(b *testing.B) {
					verdictCacheOn.Store(on)
					lastNS, lastCPU = measure(b, h, s)
				})
				cpu[on] += lastCPU
				ns[on] += lastNS
			}
		}
		if cpu[false] > 0 && cpu[true] > 0 {
			fmt.Printf("RATIO verdict-cache %-16s off %7.3f ms/req (cpu %7.3f ms)  on %7.3f ms/req (cpu %7.3f ms)  speed-up x%.2f (cpu x%.2f)\n",
				s.name, ns[false]/2e6, cpu[false]/2e6, ns[true]/2e6, cpu[true]/2e6, ns[false]/ns[true], cpu[false]/cpu[true])
		}
	}
}

// BenchmarkSkipPhases compares, side by side in alternating rounds, rule
// skipping as it was (phases 1 and 2, request collections) with rule
// skipping in every phase and of settled TX comparisons, on the same
// workloads, and prints the ratios.
//
//	go test -run XXX -bench SkipPhases -benchtime 400x ./modules/wafaccel/
func BenchmarkSkipPhases(b *testing.B) {
	all := newProductionHandlerSkip(b, true)
	txCandidatesOn = false
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(wafbench.Directives(
		"SecAction \"id:900970,phase:1,pass,nolog,neoSkip\"\nSecAction \"id:900971,phase:2,pass,nolog,neoSkip\"\n", SkipDirectivesAfter)))
	txCandidatesOn = true
	if err != nil {
		b.Fatal(err)
	}
	req12 := txhttp.WrapHandler(waf, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	for _, s := range append(scenarios(), variedGET()) {
		if s.name == "multipart_1MiB" {
			continue
		}
		cpu := map[string]float64{}
		ns := map[string]float64{}
		for round := 0; round < 2; round++ {
			for _, m := range []struct {
				name string
				h    http.Handler
			}{{"phases12", req12}, {"all", all}} {
				var lastCPU, lastNS float64
				b.Run(s.name+"/"+m.name, func(b *testing.B) { lastNS, lastCPU = measure(b, m.h, s) })
				cpu[m.name] += lastCPU
				ns[m.name] += lastNS
			}
		}
		if cpu["phases12"] > 0 && cpu["all"] > 0 {
			fmt.Printf("RATIO skip-phases %-16s phases 1-2 %7.3f ms/req (cpu %7.3f ms)  all phases + TX %7.3f ms/req (cpu %7.3f ms)  speed-up x%.2f (cpu x%.2f)\n",
				s.name, ns["phases12"]/2e6, cpu["phases12"]/2e6, ns["all"]/2e6, cpu["all"]/2e6, ns["phases12"]/ns["all"], cpu["phases12"]/cpu["all"])
		}
	}
}
