package natshttp

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/route"
)

// fakeGateway listens for prod/az-a request heads on its own connection and
// does what behave says with each (it runs in the subscription callback).
func fakeGateway(t *testing.T, url string, behave func(nc *nats.Conn, m *nats.Msg)) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(route.Pattern("prod", "az-a", ""), func(m *nats.Msg) { behave(nc, m) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc
}

// announce tells the edge the request's gateway inbox, as a real gateway
// does (the frame's reply subject; the edge binds the request to it).
func announce(nc *nats.Conn, reply, inbox string) {
	h := newFrame(kindCredit, 2)
	h[hdrInbox] = []string{inbox}
	_ = nc.PublishMsg(&nats.Msg{Subject: reply, Reply: inbox, Header: h})
}

// TestGatewayGoneFailsFast checks that a request whose gateway died, or whose
// response was lost with a NATS server, fails with 502 within a few check
// intervals instead of waiting the response head timeout, and that checks of
// a gateway that is alive never fail a request.
func TestGatewayGoneFailsFast(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.gateways = nil
	tp.transport = map[string]any{"zones": []string{"az-a"}, "response_header_timeout": "20s", "chunk_timeout": "20s", "gateway_check_interval": "100ms"}
	load(t, tp)

	get := func(t *testing.T) (int, string, time.Duration) {
		t.Helper()
		start := time.Now()
		req, _ := http.NewRequest("GET", tp.url("/orders/x"), nil)
		resp, body := do(t, nil, req)
		return resp.StatusCode, string(body), time.Since(start)
	}
	cases := []struct {
		name   string
		behave func(t *testing.T) func(nc *nats.Conn, m *nats.Msg)
	}{
		// SIGKILL of a gateway after it took the request: its connection
		// closes, probes to its inbox meet no responders.
		{"gateway dies after acknowledging", func(t *testing.T) func(*nats.Conn, *nats.Msg) {
			return func(nc *nats.Conn, m *nats.Msg) {
				mx, err := newMux(nc, false, nil)
				if err != nil {
					t.Error(err)
					return
				}
				_ = nc.Flush() // the subscription is at the server before another connection publishes
				st, _ := mx.open(streamOpts{window: 8, peer: m.Reply, bind: true})
				announce(nc, m.Reply, st.inbox)
				_ = nc.Flush()
				go nc.Close()
			}
		}},
		// the gateway is alive but no longer has the request: its response
		// went to a NATS server that died.
		{"response lost", func(t *testing.T) func(*nats.Conn, *nats.Msg) {
			var mx *mux
			return func(nc *nats.Conn, m *nats.Msg) {
				if mx == nil {
					var err error
					if mx, err = newMux(nc, false, nil); err != nil {
						t.Error(err)
						return
					}
				}
				announce(nc, m.Reply, mx.prefix+".gone")
			}
		}},
		// the gateway is alive and sent the response head, which was lost
		// with a NATS server
		{"response head lost", func(t *testing.T) func(*nats.Conn, *nats.Msg) {
			return func(nc *nats.Conn, m *nats.Msg) {
				mx, err := newMux(nc, false, nil)
				if err != nil {
					t.Error(err)
					return
				}
				_ = nc.Flush() // the subscription is at the server before another connection publishes
				st, _ := mx.open(streamOpts{window: 8, peer: m.Reply, bind: true})
				announce(nc, m.Reply, st.inbox)
				st.sent.Store(0) // as if the head had been published
			}
		}},
		// the request head reached a gateway that died before it answered
		// anything (or was lost with a NATS server).
		{"never acknowledged", func(t *testing.T) func(*nats.Conn, *nats.Msg) {
			return func(*nats.Conn, *nats.Msg) {}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gw := fakeGateway(t, s.ClientURL(), c.behave(t))
			code, body, took := get(t)
			gw.Close()
			if code != http.StatusBadGateway || took > 3*time.Second {
				t.Fatalf("status %d after %v (%q), want 502 within a few 100ms check intervals", code, took, body)
			}
			t.Logf("502 after %v", took)
		})
	}

	// the head arrived, then body frames were lost: the body fails at the
	// next check instead of after the 20s chunk timeout
	t.Run("body frames lost", func(t *testing.T) {
		gw := fakeGateway(t, s.ClientURL(), func(nc *nats.Conn, m *nats.Msg) {
			mx, err := newMux(nc, false, nil)
			if err != nil {
				t.Error(err)
				return
			}
			_ = nc.Flush() // the subscription is at the server before another connection publishes
			st, _ := mx.open(streamOpts{window: 8, peer: m.Reply, bind: true})
			h := newFrame(kindResp, 4)
			h[hdrStatus] = []string{"200"}
			h[hdrInbox] = []string{st.inbox}
			_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: st.inbox, Header: h, Data: []byte("first bytes ")})
			st.sent.Store(3) // frames 1-3 "sent" and lost
		})
		defer gw.Close()
		start := time.Now()
		resp, err := http.Get(tp.url("/orders/x"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("status %d, body error %v after %v; want 200 then a broken body within a few check intervals", resp.StatusCode, err, time.Since(start))
		}
	})

	// a live gateway that is slow to answer: checks pass, the head timeout
	// applies (504, not 502)
	t.Run("slow live gateway", func(t *testing.T) {
		tp := tp
		tp.gateways = []map[string]any{gw("az-a")}
		tp.transport = map[string]any{"zones": []string{"az-a"}, "response_header_timeout": "1s", "chunk_timeout": "20s", "gateway_check_interval": "50ms"}
		hang := hangListener(t)
		cfg := bytes.Replace(tp.json(t), []byte(`{"handler":"neo_echo"`), []byte(`{"handler":"reverse_proxy","upstreams":[{"dial":"`+hang+`"}]},{"handler":"neo_echo"`), 1)
		if err := loadRaw(cfg); err != nil {
			t.Fatal(err)
		}
		code, body, took := get(t)
		if code != http.StatusGatewayTimeout || took < 900*time.Millisecond {
			t.Fatalf("status %d after %v (%q), want 504 after the 1s head timeout", code, took, body)
		}
	})

	// a live gateway streaming slowly: checks pass, the stream completes
	t.Run("slow live stream", func(t *testing.T) {
		tp := tp
		tp.gateways = []map[string]any{gw("az-a")}
		tp.transport = map[string]any{"zones": []string{"az-a"}, "response_header_timeout": "5s", "chunk_timeout": "5s", "gateway_check_interval": "20ms"}
		load(t, tp)
		req, _ := http.NewRequest("GET", tp.url("/orders/events"), nil)
		req.Header.Set("Echo-Events", "8")
		req.Header.Set("Echo-Interval", "100ms")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || strings.Count(string(data), "\n\n") != 8 {
			t.Fatalf("status %d, %d events, err %v", resp.StatusCode, strings.Count(string(data), "\n\n"), err)
		}
	})
}

// TestMuxCloseWaitsForStreams: closing a mux (a transport's Cleanup on
// reload) keeps the subscription while streams are open, ends it with the
// last one, and a request that arrives later subscribes again.
func TestMuxCloseWaitsForStreams(t *testing.T) {
	s := startNATS(t, 0)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subs := func() int {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return int(s.NumSubscriptions())
	}
	base := subs()
	mx, err := newMux(nc, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush() // the subscription is at the server before another connection publishes
	subscribed := func() bool {
		mx.mu.Lock()
		defer mx.mu.Unlock()
		return mx.sub != nil
	}
	a, _ := mx.open(streamOpts{window: 8})
	b, _ := mx.open(streamOpts{window: 8})
	if n := subs(); n != base+1 {
		t.Fatalf("%d subscriptions with an open mux, want %d", n, base+1)
	}
	mx.close()
	// a frame for an open stream still arrives after close
	recv := func(st *stream) {
		t.Helper()
		if err := nc.Publish(st.inbox, []byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-st.ch:
			if string(m.Data) != "x" {
				t.Fatalf("got %q", m.Data)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a stream of a closed mux lost its frame")
		}
	}
	recv(a)
	a.close()
	a.close() // twice is harmless
	recv(b)
	if n := subs(); n != base+1 || !subscribed() {
		t.Fatalf("%d subscriptions with one stream open, want %d", n, base+1)
	}
	b.close()
	if n := subs(); n != base || subscribed() {
		t.Fatalf("%d subscriptions after the last stream closed, want %d", n, base)
	}
	// a late request subscribes again, for as long as it runs
	c, err := mx.open(streamOpts{window: 8})
	if err != nil {
		t.Fatal(err)
	}
	recv(c)
	c.close()
	if n := subs(); n != base {
		t.Fatalf("%d subscriptions after the late stream closed, want %d", n, base)
	}
}
