// Command websocket compares, side by side in one run over the same caddy
// process and neo_echo replica, WebSockets through edge → NATS → stage
// gateway → replica with edge → HTTP → stage server → replica (the same
// two proxies, an HTTP hop instead of NATS) and, with -direct, with a plain
// reverse_proxy edge → replica: echo messages per second, p99 round trip,
// CPU time per echo of the caddy process and of this one (the clients and,
// for the NATS chain, the nats-server) and NATS messages per echo, with -c
// sockets each sending one message and waiting for its echo, in
// alternating rounds. Then the caddy process's resident memory per idle
// socket (-idle sockets held open on each chain; one process, so the
// figure is the whole chain's).
//
// With -split N, it runs the edge, the stage gateway (with its stage
// server), the replica and a plain reverse_proxy edge as separate
// processes, as production does: first each process's CPU time per echo
// under -c sockets for -d (a core of a role carries 1/that echoes per
// second), then, for each of the edge, the gateway and the plain edge, the
// growth per idle socket of N sockets of its Go heap and stacks in use
// (after collections, from the admin API's /debug/pprof/heap) and of its
// resident memory.
//
//	go run ./integration/bench/websocket [-c 16] [-d 3s] [-rounds 2] [-size 64] [-idle 500] [-direct] [-split 1000] [-stream-buffer 4KiB]
//
// NEO_CADDY_BIN names a prebuilt caddy binary (else it is built).
// NEO_WS_CPU_PROFILE=<prefix> writes CPU profiles of the caddy processes
// under load (<prefix>-nats.prof, -http, -split-edge, -split-gateway,
// -split-plain), NEO_WS_HEAP_PROFILE=<prefix> heap profiles with the idle
// sockets open, NEO_WS_GOROUTINES=1 the goroutine and memory counts.
// Everything listens on 127.0.0.1 ports chosen at random; the nats-server
// runs in this program. Absolute numbers depend on the machine; the ratios
// are the point.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/projectneo/caddy-neo/integration/harness"
)

type result struct {
	msgs int
	errs int
	dur  time.Duration
	lat  []time.Duration
	// CPU time of the caddy process and of this one, NATS messages
	caddyCPU, benchCPU time.Duration
	natsMsgs           int64
}

func (r result) cpuPer() time.Duration {
	return (r.caddyCPU / time.Duration(max(r.msgs, 1))).Round(100 * time.Nanosecond)
}
func (r result) benchPer() time.Duration {
	return (r.benchCPU / time.Duration(max(r.msgs, 1))).Round(100 * time.Nanosecond)
}

func (r result) rate() float64 { return float64(r.msgs) / r.dur.Seconds() }
func (r result) p99() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	return r.lat[len(r.lat)*99/100]
}

// echoLoad runs conns sockets to url for d, each writing a message of size
// bytes and reading its echo, and counts the round trips.
func echoLoad(url string, conns, size int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var res result
	msg := make([]byte, size)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				mu.Lock()
				res.errs++
				mu.Unlock()
				return
			}
			defer c.CloseNow()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					errs++
					break
				}
				if _, _, err := c.Read(ctx); err != nil {
					errs++
					break
				}
				lat = append(lat, time.Since(t0))
			}
			_ = c.Close(websocket.StatusNormalClosure, "")
			mu.Lock()
			res.msgs += len(lat)
			res.errs += errs
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.dur = time.Since(start)
	return res
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

// idleCost opens n sockets to url, exchanges one message on each, and
// returns the growth of pid's resident memory per socket while they are
// open.
func idleCost(url string, pid, n int) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	before := rss(pid)
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for range n {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
			return 0, err
		}
		if _, _, err := c.Read(ctx); err != nil {
			return 0, err
		}
	}
	time.Sleep(time.Second) // let the process settle before reading its RSS
	return float64(rss(pid)-before) / float64(n), nil
}

// cpuTime is the user+system CPU time pid has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ
}

// measured runs echoLoad and adds the CPU time the caddy process and this
// one (the clients, and the nats-server) spent, and the messages ns (when
// not nil) took in.
func measured(url string, pid int, ns *server.Server, conns, size int, d time.Duration) result {
	var in0 int64
	if ns != nil {
		v, _ := ns.Varz(nil)
		in0 = v.InMsgs
	}
	c0, s0 := cpuTime(pid), cpuTime(os.Getpid())
	r := echoLoad(url, conns, size, d)
	r.caddyCPU, r.benchCPU = cpuTime(pid)-c0, cpuTime(os.Getpid())-s0
	if ns != nil {
		v, _ := ns.Varz(nil)
		r.natsMsgs = v.InMsgs - in0
	}
	return r
}

// cpuProfiles writes a CPU profile of d of each instance to <its key>.prof
// while run puts them under load (run outlasts the profiles).
func cpuProfiles(insts map[string]*harness.Instance, d time.Duration, run func()) {
	var wg sync.WaitGroup
	for file, inst := range insts {
		wg.Go(func() {
			if st, body, err := inst.Admin("GET", fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(d.Seconds()))), nil); err == nil && st == 200 {
				_ = os.WriteFile(file+".prof", body, 0o644)
			}
		})
	}
	run()
	wg.Wait()
}

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

func main() {
	conns := flag.Int("c", 16, "concurrent sockets")
	dur := flag.Duration("d", 3*time.Second, "duration of each run")
	rounds := flag.Int("rounds", 2, "alternating rounds per chain")
	size := flag.Int("size", 64, "bytes per message")
	idle := flag.Int("idle", 500, "idle sockets per chain for the memory figure (0 skips)")
	split := flag.Int("split", 0, "idle sockets for the per-process (edge, gateway) memory figures (0 skips)")
	inproc := flag.Bool("inprocess", false, "run the NATS server inside caddy (in-process connections), as the local topology does (the + nats column is then the clients' alone)")
	direct := flag.Bool("direct", false, "also measure plain reverse_proxy edge → replica (no stage hop)")
	held := flag.Bool("held", false, "with -split: the NATS roles without neo_nats_sockets and transport neo_http (reverse_proxy holds each socket)")
	streamBuf := flag.String("stream-buffer", "", "with -split: the reverse proxies' stream_buffer_size (empty: Caddy's default)")
	flag.Parse()
	if *split > 0 && *rounds == 0 {
		splitIdle(*split, *streamBuf, *conns, *dur, *held)
		return
	}
	defer func() {
		if *split > 0 {
			splitIdle(*split, *streamBuf, *conns, *dur, *held)
		}
	}()

	ports, err := harness.FreePorts(6)
	if err != nil {
		panic(err)
	}
	ns := startNATS(ports[5])
	defer ns.Shutdown()
	dir, _ := os.MkdirTemp("", "neo-ws-bench-")
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "bench.Caddyfile")
	conf := harness.NATSChainCaddyfile(ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], *inproc, 0)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		panic(err)
	}
	inst, err := harness.StartProcess(harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[4])}})
	if err != nil {
		panic(err)
	}
	defer inst.Stop()
	pid := findPid(cfg)
	natsURL := fmt.Sprintf("ws://127.0.0.1:%d/orders/ws", ports[1])
	httpURL := fmt.Sprintf("ws://127.0.0.1:%d/orders/ws", ports[2])
	directURL := fmt.Sprintf("ws://127.0.0.1:%d/orders/ws", ports[3])
	for _, u := range []string{natsURL, httpURL} {
		if r := echoLoad(u, 2, *size, 300*time.Millisecond); r.msgs == 0 {
			fmt.Fprintf(os.Stderr, "warm-up failed for %s\n%s", u, inst.Logs())
			os.Exit(1)
		}
	}
	fmt.Printf("WebSocket echo, %d sockets, %d-byte messages, %v per run, %d alternating rounds\n", *conns, *size, *dur, *rounds)
	fmt.Println("  (cpu: CPU time per echo of the caddy process; + nats: of this process, the clients and the nats-server)")
	var ratios, p99s, cpus, directs, directP99s []float64
	tap := ns // counts the NATS messages, unless caddy runs the server
	if *inproc {
		tap = nil
	}
	for i := range *rounds {
		h := measured(httpURL, pid, nil, *conns, *size, *dur)
		n := measured(natsURL, pid, tap, *conns, *size, *dur)
		msgs := ""
		if tap != nil {
			msgs = fmt.Sprintf(" %.2f NATS msgs/echo", float64(n.natsMsgs)/float64(max(n.msgs, 1)))
		}
		fmt.Printf("  round %d  HTTP %6.0f msg/s p99 %-8v cpu %-7v | NATS %6.0f msg/s p99 %-8v cpu %-7v + nats %-7v%s | ratio %.3f\n",
			i+1, h.rate(), h.p99().Round(time.Microsecond), h.cpuPer(), n.rate(), n.p99().Round(time.Microsecond), n.cpuPer(), n.benchPer(),
			msgs, n.rate()/h.rate())
		if h.errs+n.errs > 0 {
			fmt.Printf("  round %d errors: HTTP %d NATS %d\n", i+1, h.errs, n.errs)
		}
		ratios = append(ratios, n.rate()/h.rate())
		p99s = append(p99s, float64(n.p99())/float64(h.p99()))
		cpus = append(cpus, float64(n.cpuPer())/float64(h.cpuPer()))
		if *direct {
			d := measured(directURL, pid, nil, *conns, *size, *dur)
			fmt.Printf("  round %d  plain reverse_proxy edge → replica %6.0f msg/s p99 %-8v cpu %-7v | NATS/plain %.3f, p99 %.3f\n",
				i+1, d.rate(), d.p99().Round(time.Microsecond), d.cpuPer(), n.rate()/d.rate(), float64(n.p99())/float64(d.p99()))
			directs = append(directs, n.rate()/d.rate())
			directP99s = append(directP99s, float64(n.p99())/float64(d.p99()))
		}
	}
	if prefix := os.Getenv("NEO_WS_CPU_PROFILE"); prefix != "" {
		// a CPU profile of the caddy process under each chain's load
		cpuProfiles(map[string]*harness.Instance{prefix + "-nats": inst}, *dur, func() { echoLoad(natsURL, *conns, *size, *dur+time.Second) })
		cpuProfiles(map[string]*harness.Instance{prefix + "-http": inst}, *dur, func() { echoLoad(httpURL, *conns, *size, *dur+time.Second) })
	}

	for _, v := range [][]float64{ratios, p99s, cpus, directs, directP99s} {
		slices.Sort(v)
	}
	fmt.Printf("RATIO NATS/HTTP msg/s median %.3f (min %.3f max %.3f); p99 NATS/HTTP median %.3f; caddy CPU per echo NATS/HTTP median %.3f\n",
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], p99s[len(p99s)/2], cpus[len(cpus)/2])
	if len(directs) > 0 {
		fmt.Printf("RATIO NATS/plain reverse_proxy msg/s median %.3f; p99 NATS/plain median %.3f\n", directs[len(directs)/2], directP99s[len(directP99s)/2])
	}
	if *idle > 0 && pid > 0 {
		hb, err := idleCost(httpURL, pid, *idle)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idle HTTP sockets: %v\n", err)
			os.Exit(1)
		}
		time.Sleep(2 * time.Second)
		nb, err := idleCost(natsURL, pid, *idle)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idle NATS sockets: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("idle sockets (%d per chain; edge + gateway/stage + replica in one process): HTTP %.1f KiB/socket, NATS %.1f KiB/socket, RATIO %.2f\n",
			*idle, hb/1024, nb/1024, nb/hb)
	}
}

// memInUse is the Go heap and stacks in use of the caddy instance, after a
// GC (the admin API's heap profile with gc=1 and its MemStats comment).
func memInUse(inst *harness.Instance) int64 {
	st, body, err := inst.Admin("GET", "/debug/pprof/heap?debug=1&gc=1", nil)
	if err != nil || st != 200 {
		return 0
	}
	var total int64
	for _, l := range strings.Split(string(body), "\n") {
		// "# HeapInuse = N" and "# Stack = inuse / sys"
		for _, k := range []string{"# HeapInuse = ", "# Stack = "} {
			if v, ok := strings.CutPrefix(l, k); ok {
				v, _, _ = strings.Cut(v, " ")
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total
}

const splitEdge = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
	neo_nats {
		connection default {
			servers nats://127.0.0.1:%[3]d
		}
	}
}

http://:%[2]d {
	bind 127.0.0.1
	%[5]s
	reverse_proxy nats {
		transport neo_nats {
			subject neo.rt.prod.{neo.zone}.acme.orders
			zones az-a
		}
		%[4]s
	}
}
`

const splitGateway = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
	servers 127.0.0.1:%[2]d {
		name stage
	}
	neo_nats {
		connection default {
			servers nats://127.0.0.1:%[3]d
		}
	}
	neo_nats_gateway az-a {
		server stage
		stage prod
		zone az-a
	}
}

http://:%[2]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[4]d {
		%[5]s
		%[6]s
	}
}
`

const splitPlain = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
}

http://:%[2]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[3]d {
		%[4]s
	}
}
`

const splitReplica = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
}

http://:%[2]d {
	bind 127.0.0.1
	neo_echo {
		replica r1
	}
}
`

// startNATS starts the benchmark's NATS server on 127.0.0.1:port.
func startNATS(port int) *server.Server {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		panic(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		panic("nats-server not ready")
	}
	return ns
}

// splitIdle runs edge, gateway and replica as three caddy processes and
// prints each of the edge's and the gateway's memory per idle socket.
func splitIdle(n int, streamBuf string, sockets int, load time.Duration, held bool) {
	opt := ""
	if streamBuf != "" {
		opt = "stream_buffer_size " + streamBuf
	}
	ports, err := harness.FreePorts(9)
	if err != nil {
		panic(err)
	}
	ns := startNATS(ports[6])
	defer ns.Shutdown()
	dir, _ := os.MkdirTemp("", "neo-ws-split-")
	defer os.RemoveAll(dir)
	start := func(name, cfg string, admin, listen int) *harness.Instance {
		f := filepath.Join(dir, name+".Caddyfile")
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			panic(err)
		}
		inst, err := harness.StartProcess(harness.Options{Config: f, Admin: fmt.Sprintf("127.0.0.1:%d", admin),
			WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", listen)}})
		if err != nil {
			panic(err)
		}
		return inst
	}
	replica := start("replica", fmt.Sprintf(splitReplica, ports[4], ports[5]), ports[4], ports[5])
	defer replica.Stop()
	edgeSockets, gwTransport := "neo_nats_sockets", "transport neo_http"
	if held {
		// the sockets held by reverse_proxy's upgrade handling
		edgeSockets, gwTransport = "", ""
	}
	gw := start("gateway", fmt.Sprintf(splitGateway, ports[2], ports[3], ports[6], ports[5], opt, gwTransport), ports[2], ports[3])
	defer gw.Stop()
	edge := start("edge", fmt.Sprintf(splitEdge, ports[0], ports[1], ports[6], opt, edgeSockets), ports[0], ports[1])
	defer edge.Stop()
	plain := start("plain", fmt.Sprintf(splitPlain, ports[7], ports[8], ports[5], opt), ports[7], ports[8])
	defer plain.Stop()
	url := fmt.Sprintf("ws://127.0.0.1:%d/orders/ws", ports[1])
	plainURL := fmt.Sprintf("ws://127.0.0.1:%d/orders/ws", ports[8])
	for _, u := range []string{url, plainURL} {
		for r := echoLoad(u, 2, 64, 300*time.Millisecond); r.msgs == 0; r = echoLoad(u, 2, 64, 300*time.Millisecond) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if load > 0 {
		// each role on its own machine: how much CPU each process spends
		// per echo decides how many echoes a core of it carries
		cpu := func(url string, insts ...*harness.Instance) (result, []time.Duration) {
			before := make([]time.Duration, len(insts))
			for i, in := range insts {
				before[i] = cpuTime(in.Pid())
			}
			r := echoLoad(url, sockets, 64, load)
			per := make([]time.Duration, len(insts))
			for i, in := range insts {
				per[i] = (cpuTime(in.Pid()) - before[i]) / time.Duration(max(r.msgs, 1))
			}
			return r, per
		}
		var ratios []float64
		if prefix := os.Getenv("NEO_WS_CPU_PROFILE"); prefix != "" {
			// CPU profiles of the edge, the gateway and the plain edge
			cpuProfiles(map[string]*harness.Instance{prefix + "-split-edge": edge, prefix + "-split-gateway": gw}, load,
				func() { echoLoad(url, sockets, 64, load+time.Second) })
			cpuProfiles(map[string]*harness.Instance{prefix + "-split-plain": plain}, load,
				func() { echoLoad(plainURL, sockets, 64, load+time.Second) })
		}
		for range 2 {
			nr, n := cpu(url, edge, gw, replica)
			pr, p := cpu(plainURL, plain, replica)
			fmt.Printf("  CPU per echo, separate processes: NATS edge %v, stage gateway %v, replica %v (%.0f msg/s) | plain reverse_proxy edge %v, replica %v (%.0f msg/s)\n",
				n[0].Round(100*time.Nanosecond), n[1].Round(100*time.Nanosecond), n[2].Round(100*time.Nanosecond), nr.rate(),
				p[0].Round(100*time.Nanosecond), p[1].Round(100*time.Nanosecond), pr.rate())
			ratios = append(ratios, float64(p[0])/float64(max(n[0], n[1])))
		}
		slices.Sort(ratios)
		fmt.Printf("RATIO echoes per core of the busier NATS role (edge or gateway) / of the plain reverse_proxy edge: %.3f (min %.3f)\n", ratios[len(ratios)-1], ratios[0])
	}
	time.Sleep(time.Second)
	eHeap, gHeap, pHeap := memInUse(edge), memInUse(gw), memInUse(plain)
	eRSS, gRSS, pRSS := rss(edge.Pid()), rss(gw.Pid()), rss(plain.Pid())
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conns := make([]*websocket.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := range 2 * n {
		u := url
		if i%2 == 1 {
			u = plainURL
		}
		c, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			panic(err)
		}
		conns = append(conns, c)
		if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
			panic(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			panic(err)
		}
	}
	time.Sleep(2 * time.Second) // a few probe rounds: the sockets are idle, not new
	for range 8 {
		// a long-running process collects many times while its sockets are
		// idle, and each collection halves the stacks that use less than a
		// quarter of theirs: the steady state of an idle socket's stacks
		for _, inst := range []*harness.Instance{edge, gw, plain} {
			_, _, _ = inst.Admin("GET", "/debug/pprof/heap?gc=1", nil)
		}
	}
	if os.Getenv("NEO_WS_GOROUTINES") != "" {
		for name, inst := range map[string]*harness.Instance{"edge": edge, "gateway": gw, "plain": plain} {
			if st, body, err := inst.Admin("GET", "/debug/pprof/goroutine?debug=1", nil); err == nil && st == 200 {
				fmt.Printf("%s: %s\n", name, strings.SplitN(string(body), "\n", 2)[0])
				_ = os.WriteFile("/tmp/wsgr-"+name+".txt", body, 0o644)
			}
			if st, body, err := inst.Admin("GET", "/debug/pprof/heap?debug=1&gc=1", nil); err == nil && st == 200 {
				for _, l := range strings.Split(string(body), "\n") {
					if strings.HasPrefix(l, "# HeapInuse") || strings.HasPrefix(l, "# Stack =") {
						fmt.Println(name, l)
					}
				}
			}
		}
	}
	if prefix := os.Getenv("NEO_WS_HEAP_PROFILE"); prefix != "" {
		// the heap profiles of the edge and the gateway with the sockets open
		for name, inst := range map[string]*harness.Instance{"edge": edge, "gateway": gw, "plain": plain} {
			if st, body, err := inst.Admin("GET", "/debug/pprof/heap?gc=1", nil); err == nil && st == 200 {
				_ = os.WriteFile(prefix+"-"+name+".prof", body, 0o644)
			}
		}
	}
	per := func(after, before int64) float64 { return float64(after-before) / float64(n) / 1024 }
	if streamBuf == "" {
		streamBuf = "32KiB (Caddy's default)"
	}
	path := "neo_nats_sockets and transport neo_http"
	if held {
		path = "held by reverse_proxy (-held)"
	}
	fmt.Printf("idle sockets, separate processes (%d sockets, stream_buffer_size %s, NATS sockets %s), heap+stacks in use (RSS) per socket:\n"+
		"  NATS edge %.1f KiB (%.1f), stage gateway %.1f KiB (%.1f); plain reverse_proxy edge %.1f KiB (%.1f)\n",
		n, streamBuf, path, per(memInUse(edge), eHeap), per(rss(edge.Pid()), eRSS), per(memInUse(gw), gHeap), per(rss(gw.Pid()), gRSS),
		per(memInUse(plain), pHeap), per(rss(plain.Pid()), pRSS))
}
