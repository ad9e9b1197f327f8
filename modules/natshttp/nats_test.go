package natshttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

// TestTransportValidate checks that bad transport settings are refused
// with the field's name.
func TestTransportValidate(t *testing.T) {
	for want, c := range map[string]*Transport{
		"protocol_version: want 1, 2 or 3, got 4": {Subject: DefaultSubject, FlowControl: FlowControl{ChunkSize: 1 << 20, Window: 8, SocketWindow: 32}, ProtocolVersion: 4},
		"window: want 1 to":                       {Subject: DefaultSubject, FlowControl: FlowControl{ChunkSize: 1 << 20, Window: 0, SocketWindow: 32}},
		"chunk_size: want":                        {Subject: DefaultSubject, FlowControl: FlowControl{ChunkSize: 10, Window: 8, SocketWindow: 32}},
		"subject:":                                {Subject: "neo.>", FlowControl: FlowControl{ChunkSize: 1 << 20, Window: 8, SocketWindow: 32}},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
	ok := &Transport{Subject: DefaultSubject, FlowControl: FlowControl{ChunkSize: 1 << 20, Window: 8, SocketWindow: 32}, ProtocolVersion: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedInProcess runs the app with an in-process server (no listener)
// and JetStream, and a gateway and transport on it.
func TestEmbeddedInProcess(t *testing.T) {
	t.Cleanup(func() { _ = caddy.Stop() })
	edge, stage := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{
	"neo_nats":{"embedded":{"anonymous":true,"jetstream":true,"store_dir":%q}},
	"neo_nats_gateway":{"gateways":[{"server":"stage","stage":"dev","zone":"az-a"}]},
	"http":{"servers":{
	 "edge":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_test_route"},{"handler":"reverse_proxy","upstreams":[{"dial":"nats:0"}],"transport":{"protocol": "neo_nats"}}]}]},
	 "stage":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"neo_echo","replica":"r9"}]}]}}}}}`,
		t.TempDir(), edge, stage)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/orders", edge), nil)
	req.Header.Set("X-Test-Stage", "dev")
	resp, body := do(t, nil, req)
	if resp.StatusCode != 200 || report(t, body).NeoHeaders["Neo-Stage"][0] != "dev" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	app, err := caddy.ActiveContext().App("neo_nats")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := app.(*natsconn.App).Conn("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.(*natsconn.App).Conn("missing"); !errors.Is(err, natsconn.ErrUnknownConnection) {
		t.Fatal(err)
	}
	if !nc.IsConnected() || nc.ConnectedUrl() != "" && !strings.Contains(nc.ConnectedUrl(), "pipe") {
		t.Logf("connected url %q", nc.ConnectedUrl())
	}
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("jetstream: %v", err)
	}
}

// TestMicroDiscovery checks that gateways answer the micro PING, INFO and
// STATS requests with live statistics.
func TestMicroDiscovery(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	for i := 0; i < 3; i++ {
		if code, _ := zoneOf(t, tp); code != 200 {
			t.Fatal(code)
		}
	}
	time.Sleep(50 * time.Millisecond) // counters move just after the last frame is sent
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync(nc.NewInbox())
	subj, _ := micro.ControlSubject(micro.StatsVerb, "neo_stage_gateway", "")
	if err := nc.PublishRequest(subj, sub.Subject, nil); err != nil {
		t.Fatal(err)
	}
	requests := map[string]int{}
	for i := 0; i < 2; i++ {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatalf("stats reply %d: %v", i, err)
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatal(err)
		}
		for _, ep := range st.Endpoints {
			requests[st.Metadata["zone"]] += ep.NumRequests
			var gs GatewayStats
			if err := json.Unmarshal(ep.Data, &gs); err != nil || gs.Served != int64(ep.NumRequests) || gs.InFlight != 0 {
				t.Fatalf("gateway stats %s: %+v %v", ep.Data, gs, err)
			}
			if ep.QueueGroup != "neo-gateway" || !strings.HasPrefix(ep.Subject, "neo.rt.prod.") {
				t.Fatalf("endpoint %+v", ep)
			}
		}
	}
	if requests["az-a"] != 3 || requests["az-b"] != 0 {
		t.Fatalf("requests by zone %v, want 3 in az-a", requests)
	}
}

// TestTrailers sends request trailers over a streamed body and gets
// announced and late response trailers back.
func TestTrailers(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	for _, size := range []int{10, 300 << 10} {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(strings.Repeat("x", size)))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", tp.url("/trailers"), pr)
		// the fields the edge controls never travel as request trailers
		req.Trailer = http.Header{}
		for _, k := range []string{"X-Checksum", "Neo-Tenant", "Neo-Caller", "X-Forwarded-For", "Forwarded", "X-Real-Ip", "Cf-Connecting-Ip"} {
			req.Trailer.Set(k, "abc")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != fmt.Sprintf("bytes=%d checksum=abc trailers=X-Checksum", size) {
			t.Fatalf("body %q %v", body, err)
		}
		if resp.Trailer.Get("Neo-Resp-Sum") != "xyz" || resp.Trailer.Get("Neo-Late") != "late" {
			t.Fatalf("response trailers %v", resp.Trailer)
		}
	}
}

// TestFlowControlShared: the transport and the gateway take the same
// flow-control settings under the same JSON names, with the same defaults
// and the same checks, each error naming its field.
func TestFlowControlShared(t *testing.T) {
	const js = `{"chunk_timeout": "5s", "chunk_size": 4096, "window": 3, "socket_window": 5}`
	want := FlowControl{ChunkTimeout: caddy.Duration(5 * time.Second), ChunkSize: 4096, Window: 3, SocketWindow: 5}
	var tr Transport
	var g Gateway
	for _, v := range []any{&tr, &g} {
		if err := json.Unmarshal([]byte(js), v); err != nil {
			t.Fatal(err)
		}
	}
	if tr.FlowControl != want || g.FlowControl != want {
		t.Fatalf("transport %+v, gateway %+v, want %+v", tr.FlowControl, g.FlowControl, want)
	}
	var empty FlowControl
	empty.fillDefaults()
	if empty != (FlowControl{ChunkTimeout: caddy.Duration(60 * time.Second), ChunkSize: 1 << 20, Window: 8, SocketWindow: 32}) {
		t.Fatalf("defaults: %+v", empty)
	}
	for want, fc := range map[string]FlowControl{
		"chunk_timeout: must not be negative":     {ChunkTimeout: -1, ChunkSize: 1 << 20, Window: 8, SocketWindow: 32},
		"chunk_size: want 1024 to":                {ChunkSize: 1023, Window: 8, SocketWindow: 32},
		"window: want 1 to 1024, got 1025":        {ChunkSize: 1 << 20, Window: 1025, SocketWindow: 32},
		"socket_window: want 1 to 1024, got 1025": {ChunkSize: 1 << 20, Window: 8, SocketWindow: 1025},
	} {
		tr := &Transport{Subject: DefaultSubject, FlowControl: fc}
		g := &Gateway{Server: "s", Stage: "prod", Zone: "az-a", FlowControl: fc}
		g.fillDefaults()
		for name, err := range map[string]error{"transport": tr.Validate(), "gateway": g.validate()} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: want an error containing %q, got %v", name, want, err)
			}
		}
	}
}
