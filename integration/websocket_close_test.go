package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsReplica is a WebSocket echo server on loopback (an app replica).
type wsReplica struct {
	port   int
	active atomic.Int64 // open sockets
}

func startWSEchoReplica(t *testing.T) *wsReplica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rep := &wsReplica{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		rep.active.Add(1)
		defer rep.active.Add(-1)
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rep
}

// dialWS opens a WebSocket to acme's app ws through the edge (HTTP/1.1
// over TLS, as browsers upgrade).
func (gt *grpcTopo) dialWS(ctx context.Context) (*websocket.Conn, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gt.roots, ServerName: "acme.apps.localhost"},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", gt.edgePort))
		}}
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://acme.apps.localhost:%d/ws/", gt.edgePort), &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	return c, err
}

// wsEcho sends msg and wants it back.
func wsEcho(ctx context.Context, c *websocket.Conn, msg string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// dialWSRetry dials until a socket echoes (a gateway that just started
// may not be subscribed yet).
func (gt *grpcTopo) dialWSRetry(t *testing.T, ctx context.Context) *websocket.Conn {
	t.Helper()
	for {
		c, err := gt.dialWS(ctx)
		if err == nil {
			if err = wsEcho(ctx, c, "ready"); err == nil {
				return c
			}
			c.CloseNow()
		}
		if ctx.Err() != nil {
			t.Fatalf("no socket through the edge: %v\nedge:\n%s\ngateway:\n%s", err, tail(gt.edge.Logs(), 2000), tail(gt.gateway.Logs(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitClose reads until the socket ends and returns its close status
// (-1: no close frame). A socket that does not end fails the test.
func waitClose(t *testing.T, ctx context.Context, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	_, _, err := c.Read(ctx)
	if err == nil {
		t.Fatal("a message instead of the end")
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("the socket hung: %v", err)
	}
	t.Logf("socket ended: %v", err)
	return websocket.CloseStatus(err)
}

// TestWebSocketGatewayCloseCodes: the production edge and stage gateway
// (caddy binaries) carry a WebSocket to an echo replica; the gateway
// process killed (SIGKILL) ends the client's socket with close code 1011
// within a few gateway_check_intervals, a gateway stopped gracefully
// (SIGTERM) with 1001 at once, and so does an edge stopped gracefully;
// never a hung socket or a bare connection reset. Edge and gateway reloads (POST /load, forced) do not interrupt an
// open socket.
func TestWebSocketGatewayCloseCodes(t *testing.T) {
	gt := startGRPCTopo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	t.Run("edge and gateway reloads keep the socket", func(t *testing.T) {
		c := gt.dialWSRetry(t, ctx)
		defer c.CloseNow()
		for i, inst := range []*struct {
			name   string
			reload func()
		}{{"edge", func() { reload(t, gt.edge) }}, {"gateway", func() { reload(t, gt.gateway) }}} {
			inst.reload()
			for j := range 20 {
				if err := wsEcho(ctx, c, fmt.Sprintf("after %s reload %d/%d", inst.name, i, j)); err != nil {
					t.Fatalf("after the %s reload: %v\nedge:\n%s\ngateway:\n%s", inst.name, err, tail(gt.edge.Logs(), 2000), tail(gt.gateway.Logs(), 2000))
				}
			}
		}
		// a new socket after both reloads
		c2 := gt.dialWSRetry(t, ctx)
		c2.CloseNow()
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("gateway killed: 1011", func(t *testing.T) {
		c := gt.dialWSRetry(t, ctx)
		defer c.CloseNow()
		start := time.Now()
		gt.gateway.Kill()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		if code := waitClose(t, rctx, c); code != websocket.StatusInternalError {
			t.Fatalf("close code %d after the gateway died, want 1011", code)
		}
		t.Logf("closed %v after the kill", time.Since(start).Round(time.Millisecond))
	})

	t.Run("gateway stopped: 1001", func(t *testing.T) {
		gt.gateway = gt.startGateway(t)
		c := gt.dialWSRetry(t, ctx)
		defer c.CloseNow()
		if err := syscall.Kill(gt.gateway.Pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		if code := waitClose(t, rctx, c); code != websocket.StatusGoingAway {
			t.Fatalf("close code %d after the gateway stopped, want 1001\ngateway:\n%s", code, tail(gt.gateway.Logs(), 2000))
		}
	})

	t.Run("edge killed: the gateway ends the replica's side", func(t *testing.T) {
		gt.gateway = gt.startGateway(t)
		// a short chunk_timeout: the gateway's bound on an edge's silence
		_, cfg, err := gt.gateway.Admin("GET", "/config/", nil)
		if err != nil {
			t.Fatal(err)
		}
		patched := strings.Replace(string(cfg), `"drain_timeout":30000000000`, `"drain_timeout":30000000000,"chunk_timeout":3000000000`, 1)
		if patched == string(cfg) {
			t.Fatalf("no drain_timeout in the gateway's config: %.500s", cfg)
		}
		if st, body, err := gt.gateway.Admin("POST", "/load", []byte(patched)); err != nil || st != 200 {
			t.Fatalf("loading chunk_timeout 3s: %d %s %v", st, body, err)
		}
		c := gt.dialWSRetry(t, ctx)
		defer c.CloseNow()
		if n := gt.acmeWS.active.Load(); n != 1 {
			t.Fatalf("%d sockets open at the replica, want 1", n)
		}
		start := time.Now()
		gt.edge.Kill()
		for gt.acmeWS.active.Load() != 0 {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("the replica's socket still open 30s after the edge died\ngateway:\n%s", tail(gt.gateway.Logs(), 2000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("the replica's socket ended %v after the edge died", time.Since(start).Round(time.Millisecond))
	})

	t.Run("edge stopped: 1001", func(t *testing.T) {
		// neo_nats_sockets ends the sockets of an exiting edge itself,
		// each with a close frame, before the process ends (the gateway
		// of the subtest before stopped with it)
		gt.gateway = gt.startGateway(t)
		gt.edge = gt.startEdge(t)
		c := gt.dialWSRetry(t, ctx)
		defer c.CloseNow()
		if err := syscall.Kill(gt.edge.Pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		if code := waitClose(t, rctx, c); code != websocket.StatusGoingAway {
			t.Fatalf("close code %d after the edge stopped, want 1001\nedge:\n%s", code, tail(gt.edge.Logs(), 2000))
		}
	})
}
