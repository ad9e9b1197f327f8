package integration

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// goroutines is the caddy process's goroutine count (its admin API's
// goroutine profile).
func goroutines(t *testing.T, inst *harness.Instance) int {
	t.Helper()
	code, body, err := inst.Admin("GET", "/debug/pprof/goroutine?debug=1", nil)
	if err != nil || code != 200 {
		t.Fatalf("goroutine profile: %d %v", code, err)
	}
	first, _, _ := strings.Cut(string(body), "\n")
	_, total, ok := strings.Cut(first, "total ")
	n, err := strconv.Atoi(strings.TrimSpace(total))
	if !ok || err != nil {
		t.Fatalf("goroutine profile starts %q", first)
	}
	return n
}

// gatewaysInFlight sums caddy_neo_nats_gateway_in_flight over the
// process's gateways.
func gatewaysInFlight(t *testing.T, inst *harness.Instance) int {
	t.Helper()
	code, body, err := inst.Admin("GET", "/metrics", nil)
	if err != nil || code != 200 {
		t.Fatalf("metrics: %d %v", code, err)
	}
	total := 0.0
	for _, l := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(l, "caddy_neo_nats_gateway_in_flight{"); ok {
			_, v, _ := strings.Cut(rest, "} ")
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metrics line %q", l)
			}
			total += f
		}
	}
	return int(total)
}

// TestWebSocketLeanPath: an idle WebSocket carried by neo_nats_sockets on
// the edge and transport neo_http on the stage server costs two goroutines
// on each (reverse_proxy holds four per proxy: the request's, two copiers
// and a cancel watcher), which is most of the memory an idle socket takes
// (docs/benchmarks.md has the bytes). The topology runs edge, gateway and
// the neo_echo replica (one goroutine per socket) in one process: 5 per
// socket against 9.
func TestWebSocketLeanPath(t *testing.T) {
	const n = 40
	for _, c := range []struct {
		lean bool
		// the goroutines per socket it must come within (lean) or reach
		// (held: the test can tell the two apart)
		bound float64
	}{{true, 5.5}, {false, 8.5}} {
		name := "held by reverse_proxy"
		if c.lean {
			name = "neo_nats_sockets and neo_http"
		}
		t.Run(name, func(t *testing.T) {
			nt := startNATSTopoLean(t, c.lean)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			base := goroutines(t, nt.inst)
			conns := make([]*websocket.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					c.CloseNow()
				}
			}()
			for i := range n {
				c, _, err := nt.dialWS(ctx, nt.edge, "acme")
				if err != nil {
					t.Fatalf("dial %d: %v\n%s", i, err, tail(nt.inst.Logs(), 2000))
				}
				conns = append(conns, c)
				if err := wsEcho(ctx, c, fmt.Sprintf("socket %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			// the handshakes' transient goroutines end; wait for the count
			// to settle within (lean) or reach (held) the bound
			var per float64
			for {
				per = float64(goroutines(t, nt.inst)-base) / n
				if c.lean == (per <= c.bound) {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("%.2f goroutines per idle socket, want %s %.1f", per, map[bool]string{true: "<=", false: ">="}[c.lean], c.bound)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%.2f goroutines per idle socket (edge, gateway and replica)", per)
			// an open socket is a request in flight at its gateway
			// (max_in_flight bounds sockets too), carried or held
			if got := gatewaysInFlight(t, nt.inst); got != n {
				t.Fatalf("caddy_neo_nats_gateway_in_flight sums to %v with %d sockets open", got, n)
			}
			for i, c := range conns {
				if err := wsEcho(ctx, c, fmt.Sprintf("again %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range conns {
				if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
					t.Fatalf("close: %v", err)
				}
			}
			conns = conns[:0]
			// and they are gone once the sockets close
			closed := time.Now()
			defer func() {
				t.Logf("goroutines back to the baseline %v after the close", time.Since(closed).Round(time.Millisecond))
			}()
			for goroutines(t, nt.inst)-base > n/4 {
				if ctx.Err() != nil {
					t.Fatalf("%d goroutines left after the sockets closed", goroutines(t, nt.inst)-base)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestWebSocketLeanReload: a socket the roles carry themselves goes on
// through a config reload, then ends with close code 1001: after the edge's
// stream_close_delay (neo_nats_sockets) or, when that is longer, after the
// gateway's drain_timeout (5s here), whichever comes first.
func TestWebSocketLeanReload(t *testing.T) {
	nt := startNATSTopoLean(t, true)
	for _, c := range []struct {
		name, delay, reason string
	}{
		{"edge stream_close_delay 2s", "2s", "edge config replaced"},
		{"gateway drain_timeout 5s", "60s", "stage gateway going away"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nt.closeDelay = c.delay
			nt.reload("az-a", "az-b") // the socket's config has this delay
			var ws *websocket.Conn
			for ws == nil {
				c, _, err := nt.dialWS(ctx, nt.edge, "acme")
				if err == nil && wsEcho(ctx, c, "before") == nil {
					ws = c
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("no socket after the reload: %v\n%s", err, tail(nt.inst.Logs(), 2000))
				}
				time.Sleep(100 * time.Millisecond)
			}
			defer ws.CloseNow()
			reloaded := time.Now()
			if code, body := reload(t, nt.inst); code != 200 {
				t.Fatalf("reload: %d %s", code, body)
			}
			if err := wsEcho(ctx, ws, "after the reload"); err != nil {
				t.Fatalf("the socket did not outlive the reload: %v", err)
			}
			_, _, err := ws.Read(ctx)
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("socket ended with %v, want a close frame\n%s", err, tail(nt.inst.Logs(), 2000))
			}
			if ce.Code != websocket.StatusGoingAway || ce.Reason != c.reason {
				t.Fatalf("close %d %q, want 1001 %q", ce.Code, ce.Reason, c.reason)
			}
			t.Logf("closed %v after the reload: %d %q", time.Since(reloaded).Round(time.Millisecond), ce.Code, ce.Reason)
			// a new socket works
			c2, _, err := nt.dialWS(ctx, nt.edge, "acme")
			if err != nil {
				t.Fatal(err)
			}
			defer c2.CloseNow()
			if err := wsEcho(ctx, c2, "new"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
