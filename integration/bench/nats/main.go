// Command nats compares, side by side in one run over the same caddy process
// and replica, the chain edge → NATS → stage gateway → replica with the chain
// edge → HTTP → stage server → replica: small-request throughput and latency,
// then 1 GiB uploads and downloads with the caddy process's resident memory.
//
//	go run ./integration/bench/nats [-c 32] [-d 5s] [-big 1GiB] [-old <caddy binary>]
//
// NEO_CADDY_BIN names a prebuilt caddy binary (else it is built). -old runs
// the same topology from another binary (a build of the previous commit,
// say) in a process of its own, with a nats-server of its own, and its NATS
// chain in the same rounds and slices: the new build's NATS chain is
// compared with the old one's side by side. Everything
// listens on 127.0.0.1 ports chosen at random; the nats-server runs in this
// program. Absolute numbers depend on the machine; the ratios are the point.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/modules/echo"
)

type result struct {
	reqs     int64
	errs     int64
	dur      time.Duration
	p50, p99 time.Duration
	lat      []time.Duration // sorted
}

func (r result) rps() float64 { return float64(r.reqs) / r.dur.Seconds() }

// merge adds the requests of o (a later slice of the same chain).
func (r result) merge(o result) result {
	r.reqs += o.reqs
	r.errs += o.errs
	r.dur += o.dur
	r.lat = append(r.lat, o.lat...)
	slices.Sort(r.lat)
	r.p50, r.p99 = 0, 0
	if len(r.lat) > 0 {
		r.p50 = r.lat[len(r.lat)/2]
		r.p99 = r.lat[len(r.lat)*99/100]
	}
	return r
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: 10 * time.Second}
}

func load(url string, conns int, d time.Duration) result {
	client := newClient(conns)
	defer client.CloseIdleConnections()
	return loadWith(client, url, conns, d)
}

// loadWith runs conns workers sending GETs to url for d through client
// (whose keep-alive connections later slices reuse).
func loadWith(client *http.Client, url string, conns int, d time.Duration) result {
	var n, errs atomic.Int64
	lat := make([][]time.Duration, conns)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return result{errs: errs.Load(), dur: time.Since(start)}.merge(result{reqs: n.Load(), lat: all})
}

// rss returns the resident memory of the caddy process in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// findPid finds the caddy process started with the given config file.
func findPid(config string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && strings.Contains(string(b), config) && strings.Contains(string(b), "run") {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	return 0
}

type bigResult struct {
	bytes   int64
	dur     time.Duration
	rssPeak int64
	ok      bool
}

func (b bigResult) mibps() float64 { return float64(b.bytes) / (1 << 20) / b.dur.Seconds() }

// transfer moves size bytes up (POST) or down (GET) and samples the RSS.
func transfer(url string, size int64, up bool, pid int) bigResult {
	base := rss(pid)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r := rss(pid) - base; r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	defer close(stop)
	client := &http.Client{Timeout: 10 * time.Minute}
	start := time.Now()
	var req *http.Request
	if up {
		req, _ = http.NewRequest("POST", url, io.LimitReader(&echo.Filler{}, size))
		req.ContentLength = size
	} else {
		req, _ = http.NewRequest("GET", url, nil)
		req.Header.Set("Echo-Body-Bytes", strconv.FormatInt(size, 10))
	}
	resp, err := client.Do(req)
	if err != nil {
		return bigResult{}
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if up {
		n = size
	}
	return bigResult{bytes: n, dur: time.Since(start), rssPeak: peak.Load(), ok: err == nil && resp.StatusCode == 200 && n == size}
}

func main() {
	conns := flag.Int("c", 32, "concurrent connections")
	dur := flag.Duration("d", 5*time.Second, "duration of each throughput run")
	big := flag.Int64("big", 1<<30, "bytes per large transfer (0 skips)")
	rounds := flag.Int("rounds", 2, "alternating rounds per chain")
	profile := flag.String("cpuprofile", "", "write CPU profiles of caddy during the first HTTP run (<prefix>-http.prof) and the first NATS run (<prefix>-nats.prof), and its allocations around each (<prefix>-allocs-{http,nats}-{before,after}.prof)")
	ioStats := flag.Bool("iostats", false, "print read and write system calls and CPU time per request of caddy and of this program (load and nats-server) for each run")
	bigProfile := flag.String("bigprofile", "", "write CPU profiles of caddy (<prefix>-caddy.prof) and of this program with its nats-server (<prefix>-bench.prof) during the NATS download")
	slice := flag.Duration("slice", time.Second, "within a round, alternate the chains in slices this long until each has run -d (0: one whole run each); a change of the machine's speed during a round then weighs on every chain alike. -cpuprofile turns it off")
	withV1 := flag.Bool("v1", false, "also run the NATS chain with framing protocol version 1 (an edge with protocol_version 1), in the same rounds, and print the default framing's (version 3) ratio to it")
	oldBin := flag.String("old", "", "a caddy binary of another build: its NATS chain (same topology, its own process and nats-server) runs in the same rounds and slices, and the ratio of this build's NATS throughput to it is printed (RATIO new/old)")
	natsMode := flag.String("nats", "external", "where the nats-server runs: external (in this program, over loopback TCP, like a separate NATS cluster) inprocess (embedded in caddy, connections without a socket, like the local topology) or embedded-tcp (embedded in caddy, connections over loopback TCP)")
	flag.Parse()
	if *natsMode != "external" && *natsMode != "inprocess" && *natsMode != "embedded-tcp" {
		fmt.Fprintf(os.Stderr, "-nats: want external, inprocess or embedded-tcp, got %q\n", *natsMode)
		os.Exit(2)
	}

	cur := startTopology("", *natsMode, *withV1)
	defer cur.stop()
	inst, pid, natsURL, httpURL, v1URL := cur.inst, cur.pid, cur.natsURL, cur.httpURL, cur.v1URL
	var old *topology
	if *oldBin != "" {
		bin, err := filepath.Abs(*oldBin)
		if err != nil {
			panic(err)
		}
		old = startTopology(bin, *natsMode, false)
		defer old.stop()
	}
	warm := []string{natsURL, httpURL}
	if *withV1 {
		warm = append(warm, v1URL)
	}
	if old != nil {
		warm = append(warm, old.natsURL)
	}
	for _, u := range warm {
		if r := load(u, 2, 300*time.Millisecond); r.reqs == 0 {
			fmt.Fprintf(os.Stderr, "warm-up failed for %s\n%s", u, inst.Logs())
			os.Exit(1)
		}
	}

	fmt.Printf("small GET, %d connections, %v per run, %d alternating rounds, nats-server %s\n", *conns, *dur, *rounds, *natsMode)
	var bestN, bestH result
	var ratios, p99s, v2v1, newOld, newOldP99 []float64
	for i := 0; i < *rounds; i++ {
		prof := func(name string) {
			if *profile != "" && i == 0 {
				go func() {
					_, body, err := inst.Admin("GET", fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(dur.Seconds())-1)), nil)
					if err == nil {
						_ = os.WriteFile(*profile+"-"+name+".prof", body, 0o644)
					}
				}()
			}
		}
		allocs := func(name string) {
			if *profile != "" && i == 0 {
				if _, body, err := inst.Admin("GET", "/debug/pprof/allocs", nil); err == nil {
					_ = os.WriteFile(*profile+"-allocs-"+name+".prof", body, 0o644)
				}
			}
		}
		type chain struct {
			name, label, url string
			pid              int
			client           *http.Client
			r                result
			cpu              snapshot // system calls and CPU time, summed over slices
		}
		chains := []*chain{{name: "http", label: "HTTP", url: httpURL, pid: pid}, {name: "nats", label: "NATS", url: natsURL, pid: pid}}
		if *withV1 {
			chains = append(chains, &chain{name: "nats-v1", label: "NATS v1", url: v1URL, pid: pid})
		}
		var oldChain *chain
		if old != nil {
			oldChain = &chain{name: "nats-old", label: "NATS old", url: old.natsURL, pid: old.pid}
			chains = append(chains, oldChain)
		}
		step := *dur
		if *slice > 0 && *profile == "" {
			step = *slice
		}
		for _, c := range chains {
			c.client = newClient(*conns)
		}
		for done := time.Duration(0); done < *dur; done += step {
			for _, c := range chains {
				before := snap(c.pid)
				prof(c.name)
				allocs(c.name + "-before")
				c.r = c.r.merge(loadWith(c.client, c.url, *conns, min(step, *dur-done)))
				allocs(c.name + "-after")
				c.cpu = c.cpu.add(snap(c.pid), before)
			}
		}
		for _, c := range chains {
			c.client.CloseIdleConnections()
			if *ioStats {
				fmt.Printf("  %s run: %s\n", c.label, c.cpu.perRequest(snapshot{}, c.r.reqs))
			}
		}
		h, n := chains[0].r, chains[1].r
		fmt.Printf("  round %d  HTTP %8.0f req/s p50 %-9v p99 %-9v errs %d | NATS %8.0f req/s p50 %-9v p99 %-9v errs %d | ratio %.3f\n",
			i+1, h.rps(), h.p50.Round(time.Microsecond), h.p99.Round(time.Microsecond), h.errs,
			n.rps(), n.p50.Round(time.Microsecond), n.p99.Round(time.Microsecond), n.errs, n.rps()/h.rps())
		ratios = append(ratios, n.rps()/h.rps())
		p99s = append(p99s, float64(n.p99)/float64(h.p99))
		if *withV1 {
			v := chains[2].r
			fmt.Printf("           NATS v1 %7.0f req/s p50 %-9v p99 %-9v errs %d | NATS (v3) / NATS v1 %.3f\n",
				v.rps(), v.p50.Round(time.Microsecond), v.p99.Round(time.Microsecond), v.errs, n.rps()/v.rps())
			v2v1 = append(v2v1, n.rps()/v.rps())
		}
		if oldChain != nil {
			o := oldChain.r
			fmt.Printf("           NATS old %6.0f req/s p50 %-9v p99 %-9v errs %d | NATS new / NATS old %.3f, p99 %.3f\n",
				o.rps(), o.p50.Round(time.Microsecond), o.p99.Round(time.Microsecond), o.errs, n.rps()/o.rps(), float64(n.p99)/float64(o.p99))
			newOld = append(newOld, n.rps()/o.rps())
			newOldP99 = append(newOldP99, float64(n.p99)/float64(o.p99))
		}
		if i == 0 || h.rps() > bestH.rps() {
			bestH = h
		}
		if i == 0 || n.rps() > bestN.rps() {
			bestN = n
		}
	}
	fmt.Printf("per round: NATS/HTTP throughput %s (goal ≥ 1.00), p99 NATS/HTTP %s (goal ≤ 1.00)\n", meanRange(ratios), meanRange(p99s))
	fmt.Printf("best: NATS/HTTP throughput ratio %.2f× (goal ≥ 1.00), p99 NATS %v vs HTTP %v (ratio %.2f, goal ≤ 1.00)\n",
		bestN.rps()/bestH.rps(), bestN.p99.Round(time.Microsecond), bestH.p99.Round(time.Microsecond),
		float64(bestN.p99)/float64(bestH.p99))
	if *withV1 {
		fmt.Printf("RATIO framing version 3 (default) / version 1 throughput: %s\n", meanRange(v2v1))
	}
	if old != nil {
		fmt.Printf("RATIO new/old NATS chain: throughput %s, p99 %s (old: %s)\n", meanRange(newOld), meanRange(newOldP99), *oldBin)
	}

	if *big > 0 {
		fmt.Printf("\nlarge transfers of %d MiB (RSS growth of the caddy process, pid %d)\n", *big>>20, pid)
		for _, up := range []bool{true, false} {
			dir := "download"
			if up {
				dir = "upload"
			}
			h := transfer(httpURL, *big, up, pid)
			var stopProfile func()
			if *bigProfile != "" && !up {
				stopProfile = profileBoth(inst, *bigProfile)
			}
			n := transfer(natsURL, *big, up, pid)
			if stopProfile != nil {
				stopProfile()
			}
			fmt.Printf("  %-8s HTTP %7.1f MiB/s (RSS +%3d MiB, ok %v) | NATS %7.1f MiB/s (RSS +%3d MiB, ok %v) | ratio %.2f× (goal ≥ 0.50, RSS < 64 MiB)\n",
				dir, h.mibps(), h.rssPeak>>20, h.ok, n.mibps(), n.rssPeak>>20, n.ok, n.mibps()/h.mibps())
			if old != nil {
				o := transfer(old.natsURL, *big, up, old.pid)
				fmt.Printf("  %-8s NATS old %7.1f MiB/s (RSS +%3d MiB, ok %v) | NATS new / old %.2f×\n", dir, o.mibps(), o.rssPeak>>20, o.ok, n.mibps()/o.mibps())
			}
		}
	}
}

// meanRange formats the mean of per-round ratios and their range.
func meanRange(r []float64) string {
	if len(r) == 0 {
		return "-"
	}
	sum, lo, hi := 0.0, r[0], r[0]
	for _, v := range r {
		sum += v
		lo, hi = min(lo, v), max(hi, v)
	}
	return fmt.Sprintf("mean %.3f [%.3f–%.3f]", sum/float64(len(r)), lo, hi)
}

// profileBoth starts CPU profiles of the caddy process (through its admin
// pprof endpoint, for up to 30 s) and of this process (load and nats-server);
// the returned function stops this process's profile and waits for caddy's.
func profileBoth(inst *harness.Instance, prefix string) func() {
	f, err := os.Create(prefix + "-bench.prof")
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, body, err := inst.Admin("GET", "/debug/pprof/profile?seconds=4", nil)
		if err == nil {
			_ = os.WriteFile(prefix+"-caddy.prof", body, 0o644)
		}
	}()
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		<-done
	}
}

// procStats is a process's system call counts and CPU time (from /proc).
type procStats struct{ syscr, syscw, cpuTicks int64 }

func readProc(pid string) procStats {
	var ps procStats
	if b, err := os.ReadFile("/proc/" + pid + "/io"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				switch f[0] {
				case "syscr:":
					ps.syscr = v
				case "syscw:":
					ps.syscw = v
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil {
		// fields after the command name: utime and stime are the 12th and 13th
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				ps.cpuTicks = u + st
			}
		}
	}
	return ps
}

type snapshot struct{ caddy, self procStats }

func snap(pid int) snapshot {
	return snapshot{caddy: readProc(strconv.Itoa(pid)), self: readProc("self")}
}

// add returns s plus the difference after − before.
func (s snapshot) add(after, before snapshot) snapshot {
	d := func(a, b, c procStats) procStats {
		return procStats{syscr: a.syscr + b.syscr - c.syscr, syscw: a.syscw + b.syscw - c.syscw, cpuTicks: a.cpuTicks + b.cpuTicks - c.cpuTicks}
	}
	return snapshot{caddy: d(s.caddy, after.caddy, before.caddy), self: d(s.self, after.self, before.self)}
}

// perRequest formats the difference from before, per request.
func (s snapshot) perRequest(before snapshot, reqs int64) string {
	if reqs == 0 {
		return "no requests"
	}
	r := float64(reqs)
	f := func(a, b procStats) string {
		// 100 clock ticks a second on Linux
		return fmt.Sprintf("reads %.2f writes %.2f cpu %.0f µs", float64(a.syscr-b.syscr)/r, float64(a.syscw-b.syscw)/r, float64(a.cpuTicks-b.cpuTicks)*1e4/r)
	}
	return "caddy " + f(s.caddy, before.caddy) + " | load+nats-server " + f(s.self, before.self)
}

// topology is one caddy process running the benchmark's chains (and the
// nats-server it uses, when external).
type topology struct {
	inst                    *harness.Instance
	ns                      *server.Server
	dir                     string
	pid                     int
	natsURL, httpURL, v1URL string
}

// startTopology runs the chains from the caddy binary bin ("": this
// repository's, or NEO_CADDY_BIN) on ports of their own.
func startTopology(bin, natsMode string, withV1 bool) *topology {
	ports, err := harness.FreePorts(7)
	if err != nil {
		panic(err)
	}
	tp := &topology{}
	if natsMode == "external" {
		tp.ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: ports[5], NoSigs: true, NoLog: true})
		if err != nil {
			panic(err)
		}
		tp.ns.Start()
		if !tp.ns.ReadyForConnections(5 * time.Second) {
			panic("nats-server not ready")
		}
	}
	tp.dir, _ = os.MkdirTemp("", "neo-nats-bench-")
	cfg := filepath.Join(tp.dir, "bench.Caddyfile")
	v1Port := 0
	if withV1 {
		v1Port = ports[6]
	}
	caddyfile := harness.NATSChainCaddyfile(ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], natsMode == "inprocess", v1Port)
	if natsMode == "embedded-tcp" {
		caddyfile = harness.NATSChainCaddyfileEmbeddedTCP(ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], v1Port)
	}
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		panic(err)
	}
	tp.inst, err = harness.StartProcess(harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", ports[0]), Binary: bin,
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[4])}})
	if err != nil {
		panic(err)
	}
	tp.pid = findPid(cfg)
	tp.natsURL = fmt.Sprintf("http://127.0.0.1:%d/orders/bench", ports[1])
	tp.httpURL = fmt.Sprintf("http://127.0.0.1:%d/orders/bench", ports[2])
	tp.v1URL = fmt.Sprintf("http://127.0.0.1:%d/orders/bench", ports[6])
	return tp
}

func (tp *topology) stop() {
	tp.inst.Stop()
	if tp.ns != nil {
		tp.ns.Shutdown()
	}
	os.RemoveAll(tp.dir)
}
