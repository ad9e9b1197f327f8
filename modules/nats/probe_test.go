package neonats

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
	if _, err := nc.Subscribe("neo.rt.prod.az-a.>", func(m *nats.Msg) { behave(nc, m) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc
}

// announce tells the edge the request's gateway inbox, as a real gateway does.
func announce(nc *nats.Conn, reply, inbox string) {
	h := newFrame(kindCredit)
	h[hdrInbox] = []string{inbox}
	_ = nc.PublishMsg(&nats.Msg{Subject: reply, Header: h})
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
				mx, err := newMux(nc)
				if err != nil {
					t.Error(err)
					return
				}
				st := mx.open(8)
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
					if mx, err = newMux(nc); err != nil {
						t.Error(err)
						return
					}
				}
				announce(nc, m.Reply, mx.prefix+".gone")
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
