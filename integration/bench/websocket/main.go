// Command websocket compares, side by side in one run over the same caddy
// process and neo_echo replica, WebSockets through edge → NATS → stage
// gateway → replica with edge → HTTP → stage server → replica: echo
// messages per second and p99 round trip with -c sockets each sending one
// message and waiting for its echo, in alternating rounds; then the caddy
// process's resident memory per idle socket (-idle sockets held open on
// each chain; edge, gateway and stage server are one process here, so the
// figure is the whole chain's).
//
//	go run ./integration/bench/websocket [-c 16] [-d 3s] [-rounds 2] [-size 64] [-idle 500]
//
// NEO_CADDY_BIN names a prebuilt caddy binary (else it is built). Everything
// listens on 127.0.0.1 ports chosen at random; the nats-server runs in this
// program. Absolute numbers depend on the machine; the ratios are the point.
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
	flag.Parse()

	ports, err := harness.FreePorts(6)
	if err != nil {
		panic(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: ports[5], NoSigs: true, NoLog: true})
	if err != nil {
		panic(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		panic("nats-server not ready")
	}
	dir, _ := os.MkdirTemp("", "neo-ws-bench-")
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "bench.Caddyfile")
	if err := os.WriteFile(cfg, []byte(harness.NATSChainCaddyfile(ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], false, 0)), 0o644); err != nil {
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
	for _, u := range []string{natsURL, httpURL} {
		if r := echoLoad(u, 2, *size, 300*time.Millisecond); r.msgs == 0 {
			fmt.Fprintf(os.Stderr, "warm-up failed for %s\n%s", u, inst.Logs())
			os.Exit(1)
		}
	}
	fmt.Printf("WebSocket echo, %d sockets, %d-byte messages, %v per run, %d alternating rounds\n", *conns, *size, *dur, *rounds)
	var ratios, p99s []float64
	for i := range *rounds {
		h := echoLoad(httpURL, *conns, *size, *dur)
		n := echoLoad(natsURL, *conns, *size, *dur)
		fmt.Printf("  round %d  HTTP %8.0f msg/s p99 %-9v errs %d | NATS %8.0f msg/s p99 %-9v errs %d | ratio %.3f\n",
			i+1, h.rate(), h.p99().Round(time.Microsecond), h.errs, n.rate(), n.p99().Round(time.Microsecond), n.errs, n.rate()/h.rate())
		ratios = append(ratios, n.rate()/h.rate())
		p99s = append(p99s, float64(n.p99())/float64(h.p99()))
	}
	slices.Sort(ratios)
	slices.Sort(p99s)
	fmt.Printf("RATIO NATS/HTTP msg/s median %.3f (min %.3f max %.3f); p99 NATS/HTTP median %.3f\n",
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], p99s[len(p99s)/2])
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
