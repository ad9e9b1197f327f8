package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// dialTopoWS opens a WebSocket to the neo_echo replica through the edge on
// port (the NATS edge or the plain HTTP edge) as tenant acme, app orders.
func (nt *natsTopo) dialWS(ctx context.Context, port int, tenant string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{"X-Tenant": {tenant}, "X-App": {"orders"}}
	c, resp, err := websocket.Dial(ctx, strings.Replace(nt.url(port, "/ws"), "http", "ws", 1), &websocket.DialOptions{HTTPHeader: h})
	if c != nil {
		c.SetReadLimit(4 << 20)
	}
	return c, resp, err
}

// TestNATSBinaryWebSocket: WebSockets through the built binary, edge ->
// NATS -> stage gateway -> neo_echo replica, held by reverse_proxy on
// both proxies and carried by the roles themselves (neo_nats_sockets,
// transport neo_http).
func TestNATSBinaryWebSocket(t *testing.T) {
	for _, lean := range []bool{false, true} {
		name := "held by reverse_proxy"
		if lean {
			name = "neo_nats_sockets and neo_http"
		}
		t.Run(name, func(t *testing.T) { testNATSBinaryWebSocket(t, lean) })
	}
}

func testNATSBinaryWebSocket(t *testing.T, lean bool) {
	nt := startNATSTopoLean(t, lean)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	t.Run("1000 messages each way and 1 MiB messages", func(t *testing.T) {
		c, resp, err := nt.dialWS(ctx, nt.edge, "acme")
		if err != nil {
			t.Fatalf("dial: %v\n%s", err, tail(nt.inst.Logs(), 2000))
		}
		defer c.CloseNow()
		if r := resp.Header.Get("Neo-Echo-Replica"); r != "r1" {
			t.Errorf("101 Neo-Echo-Replica %q, want r1", r)
		}
		errc := make(chan error, 1)
		go func() {
			for i := range 1000 {
				if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "m%d", i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for i := range 1000 {
			_, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if string(got) != fmt.Sprintf("m%d", i) {
				t.Fatalf("message %d is %q", i, got)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("neo-websocket-16"), 1<<16)
		for i := range 3 {
			big[0] = byte('a' + i)
			if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("1 MiB message %d: %d bytes back, %v", i, len(got), err)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("close: %v", err)
		}
	})

	t.Run("100 concurrent sockets", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, _, err := nt.dialWS(ctx, nt.edge, "acme")
				if err != nil {
					errs <- err
					return
				}
				defer c.CloseNow()
				for j := range 10 {
					want := fmt.Sprintf("s%d m%d", i, j)
					if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
						errs <- err
						return
					}
					if _, got, err := c.Read(ctx); err != nil || string(got) != want {
						errs <- fmt.Errorf("socket %d: %q %v", i, got, err)
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
	})

	t.Run("gateway gone ends the socket", func(t *testing.T) {
		c, _, err := nt.dialWS(ctx, nt.edge, "acme")
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		nt.reload() // no gateways
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		defer rcancel()
		if _, _, err := c.Read(rctx); err == nil {
			t.Fatal("a message after the gateways went away")
		} else if rctx.Err() != nil {
			t.Fatalf("socket hung after the gateways went away: %v", err)
		}
		nt.reload("az-a", "az-b")
	})
}
