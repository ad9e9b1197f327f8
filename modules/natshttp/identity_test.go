package natshttp

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/route"
)

// seenRequest is what a replica saw of a request.
type seenRequest struct {
	xff, proto, host, forwarded, tenant string
}

// identityReplica records the forwarding fields of each request it gets.
func identityReplica(t *testing.T) (*httptest.Server, func() seenRequest) {
	var mu sync.Mutex
	var last seenRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = seenRequest{
			xff: strings.Join(r.Header.Values("X-Forwarded-For"), "|"), proto: strings.Join(r.Header.Values("X-Forwarded-Proto"), "|"),
			host: strings.Join(r.Header.Values("X-Forwarded-Host"), "|"), forwarded: r.Header.Get("Forwarded"), tenant: r.Header.Get("Neo-Tenant"),
		}
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() seenRequest { mu.Lock(); defer mu.Unlock(); return last }
}

// TestClientIdentity: the replica behind a stage gateway sees the client
// the edge saw. The edge carries the client address it resolved (Caddy's
// client_ip, which honours the edge server's trusted_proxies) and the
// scheme (the one its reverse proxy forwards: its own, or a trusted
// proxy's) in the head; the stage server's reverse_proxy then sets
// X-Forwarded-For to that client, X-Forwarded-Proto to that scheme and
// X-Forwarded-Host to the host. An edge behind a trusted proxy (a CDN that
// terminated TLS) passes on the proxy's client and https; an edge that
// trusts nobody ignores what the client claims.
func TestClientIdentity(t *testing.T) {
	s := startNATS(t, 0)
	t.Cleanup(func() { _ = caddy.Stop() })
	replica, seen := identityReplica(t)
	trusted, untrusted, stage := freePort(t), freePort(t), freePort(t)
	edgeRoutes := `"routes":[{"handle":[{"handler":"neo_test_route"},{"handler":"reverse_proxy","upstreams":[{"dial":"nats:0"}],"transport":{"protocol":"neo_nats","zones":["az-a"]}}]}]`
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{
	"neo_nats":{"connections":{"default":{"servers":[%q]}}},
	"neo_nats_gateway":{"gateways":[{"server":"stage","stage":"prod","zone":"az-a"}]},
	"http":{"servers":{
	 "cdn":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"trusted_proxies":{"source":"static","ranges":["127.0.0.1/32"]},"client_ip_headers":["X-Forwarded-For"],%s},
	 "direct":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},%s},
	 "stage":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}]}]}}}}}`,
		s.ClientURL(), trusted, edgeRoutes, untrusted, edgeRoutes, stage, strings.TrimPrefix(replica.URL, "http://"))
	if err := loadRaw([]byte(cfg)); err != nil {
		t.Fatal(err)
	}
	get := func(port int, hdr map[string]string) seenRequest {
		t.Helper()
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/orders/x", port), nil)
		req.Host = "acme.apps.example"
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, body := do(t, nil, req)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		return seen()
	}
	spoof := map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
	if got, want := get(trusted, spoof), (seenRequest{xff: "203.0.113.7", proto: "https", host: "acme.apps.example", tenant: "acme"}); got != want {
		t.Errorf("behind a trusted proxy: the replica saw %+v, want %+v", got, want)
	}
	if got, want := get(untrusted, spoof), (seenRequest{xff: "127.0.0.1", proto: "http", host: "acme.apps.example", tenant: "acme"}); got != want {
		t.Errorf("from an untrusted client: the replica saw %+v, want %+v", got, want)
	}

	// a head from an edge of an earlier release (no client, no scheme):
	// the gateway serves it as before, from 127.0.0.1 over http
	nc := connect(t, s.ClientURL())
	head := nats.Header{hdrKind: {kindHead}, hdrVersion: {"1"}, hdrMethod: {"GET"}, hdrPath: {"/x"}, hdrHost: {"acme.apps.example"},
		hdrWindow: {"8"}, hdrLength: {"0"}, hdrEOF: {"1"}, "H-X-Forwarded-For": {"198.51.100.1"}}
	m, err := nc.RequestMsg(&nats.Msg{Subject: route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), Header: head}, 5*time.Second)
	if err != nil || m.Header.Get(hdrStatus) != "200" {
		t.Fatalf("%v %v", m, err)
	}
	if got := seen(); got.xff != "127.0.0.1" || got.proto != "http" {
		t.Errorf("an older edge's request: the replica saw %+v", got)
	}
}

// TestRequestTrailersAtGateway: a gateway drops request trailers the edge
// controls even when an edge (or anything that may publish request heads)
// frames them: announced in the head and sent in the last body frame, only
// X-Checksum reaches the handler.
func TestRequestTrailersAtGateway(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.gateways = []map[string]any{gw("az-a")}
	load(t, tp)
	nc := connect(t, s.ClientURL())
	mx, err := newMux(nc, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush() // the subscription is at the server before another connection publishes
	st, _ := mx.open(streamOpts{window: 8})
	defer st.close()
	head := frameMsg(route.Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}.Build(), st.inbox, kindHead, hdrVersion, "1", hdrMethod, "POST", hdrPath, "/trailers",
		hdrHost, "acme.apps.example", hdrWindow, "8", hdrLength, "-1", hdrBind, "1",
		hdrTrailer, "X-Checksum, Neo-Tenant, Host, X-Forwarded-For, Forwarded, X-Real-Ip, Content-Length")
	if err := nc.PublishMsg(head); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.peerCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not accept")
	}
	snd := &sender{st: st, ctx: t.Context(), timeout: 5 * time.Second}
	tr := http.Header{"X-Checksum": {"abc"}, "Neo-Tenant": {"globex"}, "Host": {"globex.apps.example"}, "X-Forwarded-For": {"6.6.6.6"},
		"Forwarded": {"for=6.6.6.6"}, "X-Real-Ip": {"6.6.6.6"}, "Content-Length": {"1"}}
	if err := snd.sendData([]byte("0123456789"), true, tr); err != nil {
		t.Fatal(err)
	}
	var resp *nats.Msg
	select {
	case resp = <-st.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no response")
	}
	f, err := parseFrame(resp)
	if err != nil {
		t.Fatal(err)
	}
	if f.status != 200 || !strings.HasPrefix(string(f.data), "bytes=10 checksum=abc trailers=X-Checksum") {
		t.Fatalf("%d %q", f.status, f.data)
	}
}
