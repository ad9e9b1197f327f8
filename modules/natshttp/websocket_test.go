package natshttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/route"
)

// wsReplica is a real WebSocket server: /ws/echo echoes every message,
// /ws/close closes with 4000 after the first message. It records the
// X-Tenant field of each handshake.
func wsReplica(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(4 << 20)
		defer c.CloseNow()
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if r.URL.Path == "/ws/close" {
				_ = c.Close(4000, "bye")
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsTopo(t *testing.T, transport map[string]any) topo {
	t.Helper()
	s := startNATS(t, 0)
	rep := wsReplica(t)
	tp := newTopo(t, s)
	tp.wsReplica = strings.TrimPrefix(rep.URL, "http://")
	tp.transport = transport
	load(t, tp)
	return tp
}

func wsURL(tp topo, path string) string {
	return strings.Replace(tp.url(path), "http://", "ws://", 1)
}

func dialWS(t testing.TB, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c.SetReadLimit(4 << 20)
	return c
}

// TestWebSocketEcho: a WebSocket through edge -> NATS -> gateway -> replica
// carries 1,000 messages each way in order, and 1 MiB messages (several
// NATS chunks each).
func TestWebSocketEcho(t *testing.T) {
	tp := wsTopo(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialWS(t, ctx, wsURL(tp, "/ws/echo"))
	defer c.CloseNow()

	// writer and reader run concurrently: the socket is full duplex
	const n = 1000
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "msg %d", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := fmt.Sprintf("msg %d", i); string(got) != want {
			t.Fatalf("message %d: got %q, want %q", i, got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for i := range 3 {
		big[i] = byte('A' + i)
		if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(got, big) {
			t.Fatalf("1 MiB message %d came back as %d bytes, type %v", i, len(got), typ)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("closing: %v", err)
	}
}

// TestWebSocketConcurrent: 100 sockets at once, each its own stream.
func TestWebSocketConcurrent(t *testing.T) {
	tp := wsTopo(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(ctx, wsURL(tp, "/ws/echo"), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.CloseNow()
			for j := range 20 {
				want := fmt.Sprintf("socket %d msg %d", i, j)
				if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
					errs <- err
					return
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if string(got) != want {
					errs <- fmt.Errorf("got %q, want %q", got, want)
					return
				}
			}
			_ = c.Close(websocket.StatusNormalClosure, "")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWebSocketReplicaCloses: the replica's close (code 4000) reaches the
// client, and the socket ends.
func TestWebSocketReplicaCloses(t *testing.T) {
	tp := wsTopo(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, wsURL(tp, "/ws/close"))
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if s := websocket.CloseStatus(err); s != 4000 {
		t.Fatalf("read after the replica closed: %v (close status %d), want status 4000", err, s)
	}
}

// TestWebSocketGatewayGone: when the gateways stop mid-socket, the edge ends
// the client's socket (within gateway_check_interval probes), it does not
// hang.
func TestWebSocketGatewayGone(t *testing.T) {
	tp := wsTopo(t, map[string]any{"gateway_check_interval": "200ms"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, wsURL(tp, "/ws/echo"))
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	// the same config without gateways: the socket's gateway is gone
	tp.gateways = nil
	tp.marker = "no gateways"
	load(t, tp)
	_, _, err := c.Read(ctx)
	if err == nil {
		t.Fatal("read a message after the gateway went away")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("socket hung: %v", err)
	}
}

// TestWebSocketRefusedUpgrades: upgrades to other protocols stay 501.
func TestWebSocketRefusedUpgrades(t *testing.T) {
	tp := wsTopo(t, nil)
	req, _ := http.NewRequest(http.MethodGet, tp.url("/ws/echo"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "h2c")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("h2c upgrade: status %d, want 501", resp.StatusCode)
	}
}

// TestWebSocketForgedFramesDropped: a hostile peer that learned an open
// socket's edge inbox (a wiretap on the request subjects) sends it forged
// credit, resp, data, probe, cancel and error frames: every one is dropped
// as not from the socket's gateway, the socket still carries the right
// bytes both ways, and nothing of the socket reaches the attacker's inbox.
func TestWebSocketForgedFramesDropped(t *testing.T) {
	s := startNATS(t, 0)
	rep := wsReplica(t)
	tp := newTopo(t, s)
	tp.gateways = []map[string]any{gw("az-a")}
	tp.wsReplica = strings.TrimPrefix(rep.URL, "http://")
	load(t, tp)
	tap := connect(t, s.ClientURL())
	heads := make(chan *nats.Msg, 16)
	if _, err := tap.ChanSubscribe(route.All, heads); err != nil {
		t.Fatal(err)
	}
	_ = tap.Flush()
	evil := connect(t, s.ClientURL())
	const evilIn = "_GW.dev.evil.TOKEN"
	evilSub, err := evil.SubscribeSync("_GW.dev.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = evil.Flush()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, wsURL(tp, "/ws/echo"))
	defer c.CloseNow()
	var inbox string
	select {
	case h := <-heads:
		inbox = h.Reply
	case <-ctx.Done():
		t.Fatal("no request head")
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "before" {
		t.Fatalf("before the attack: %q %v", got, err)
	}

	before := rejectedCount(sideEdge, reasonWrongReply)
	msgs := forged(inbox, evilIn)
	for _, m := range msgs {
		if err := evil.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the forged frames dropped", func() bool {
		return rejectedCount(sideEdge, reasonWrongReply) >= before+float64(len(msgs))
	})
	for i := range 20 {
		want := fmt.Sprintf("after %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != want {
			t.Fatalf("after the attack: %q %v, want %q", got, err, want)
		}
	}
	_ = activeConn(t).Publish(evilIn, []byte("marker"))
	if m, err := evilSub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "marker" {
		t.Fatalf("the attacker's inbox got %v (%v)", m, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}

// TestWebSocketCreditFrames: an echoing socket's receivers grant credit
// every socket_window/2 frames, not every window/2 (with the HTTP window
// of 8, one NATS message in five was a credit). A wiretap counts the
// socket's data and credit frames for 300 round trips, at the default
// socket_window (32) and at 4 set on both sides.
func TestWebSocketCreditFrames(t *testing.T) {
	for _, c := range []struct {
		window         int     // socket_window on both sides; 0: the default
		minPer, maxPer float64 // bounds of data frames per credit frame
	}{
		{0, 14, 17},
		{4, 1.8, 2.1},
	} {
		t.Run(fmt.Sprint("socket_window=", c.window), func(t *testing.T) {
			s := startNATS(t, 0)
			rep := wsReplica(t)
			tp := newTopo(t, s)
			g := gw("az-a")
			if c.window > 0 {
				tp.transport = map[string]any{"socket_window": c.window}
				g["socket_window"] = c.window
			}
			tp.gateways = []map[string]any{g}
			tp.wsReplica = strings.TrimPrefix(rep.URL, "http://")
			load(t, tp)
			tap := connect(t, s.ClientURL())
			var data, credit atomic.Int64
			if _, err := tap.Subscribe(">", func(m *nats.Msg) {
				switch msgKind(m) {
				case kindData:
					data.Add(1)
				case kindCredit:
					credit.Add(1)
				}
			}); err != nil {
				t.Fatal(err)
			}
			if err := tap.Flush(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ws := dialWS(t, ctx, wsURL(tp, "/ws/echo"))
			defer ws.CloseNow()
			const n = 300
			for i := range n {
				if err := ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "m%d", i)); err != nil {
					t.Fatal(err)
				}
				if _, _, err := ws.Read(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// the tap has every frame once it has the 2n data frames
			// (the last credits go out before the frames they follow)
			for data.Load() < 2*n && ctx.Err() == nil {
				_ = tap.Flush()
			}
			d, cr := data.Load(), credit.Load()
			if d < 2*n || cr == 0 {
				t.Fatalf("tapped %d data and %d credit frames for %d round trips", d, cr, n)
			}
			if per := float64(d) / float64(cr); per < c.minPer || per > c.maxPer {
				t.Errorf("%d data frames per credit frame (%d data, %d credit); want %.1f to %.1f", int(per), d, cr, c.minPer, c.maxPer)
			}
		})
	}
}
