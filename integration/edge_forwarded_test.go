package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// recorded is what a replica received: the request's headers and trailers.
type recorded struct {
	header, trailer http.Header
	body            string
}

// recordingReplica is an app replica (a real HTTP server in the test
// process) that reports every request it gets on a channel.
func recordingReplica(t *testing.T) (addr string, got <-chan recorded) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan recorded, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case ch <- recorded{header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: string(b)}:
		default:
		}
		fmt.Fprint(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ch
}

type fwdEdge struct {
	inst  *harness.Instance
	https string
	roots *tls.Config
}

// startForwardedEdge runs the edge snippets (with neo_forwarded) in front of
// a replica; servers is the servers block (edge-global.caddy, or one with
// trusted_proxies).
func startForwardedEdge(t *testing.T, replica, servers string) *fwdEdge {
	t.Helper()
	return startEdgeSite(t, servers, "import neo_edge {\n\t\treverse_proxy "+replica+"\n\t}")
}

// startEdgeSite runs the site acme-dev.apps.localhost with the given body
// (the edge snippets are imported) and server options.
func startEdgeSite(t *testing.T, servers, site string) *fwdEdge {
	t.Helper()
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	%s
}

import %s/caddyfiles/snippets/edge.caddy

acme-dev.apps.localhost {
	%s
}
`, ports[0], ports[1], ports[2], servers, harness.RepoRoot(), site)
	inst := harness.Start(t, harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[2])}})
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	e := &fwdEdge{inst: inst, https: fmt.Sprintf("127.0.0.1:%d", ports[2]), roots: &tls.Config{RootCAs: roots, ServerName: "acme-dev.apps.localhost"}}
	if err := harness.WaitServing(e.client("127.0.0.1"), e.url("/ready"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *fwdEdge) url(path string) string {
	_, port, _ := net.SplitHostPort(e.https)
	return "https://acme-dev.apps.localhost:" + port + path
}

// client connects from the loopback address src.
func (e *fwdEdge) client(src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", e.https) },
		TLSClientConfig:   e.roots.Clone(),
		ForceAttemptHTTP2: true,
	}}
}

// await returns what the replica got for the request marked id (earlier
// requests, such as the readiness probe's, are skipped).
func await(t *testing.T, got <-chan recorded, id string) recorded {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case r := <-got:
			if r.header.Get("X-Test-Id") == id {
				return r
			}
			t.Logf("skipped a request: %v", r.header)
		case <-timeout:
			t.Fatalf("the replica got no request %s", id)
		}
	}
}

var testSeq int

func (e *fwdEdge) get(t *testing.T, src string, hdr map[string]string, got <-chan recorded) recorded {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url("/orders/x"), nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	testSeq++
	id := fmt.Sprint(testSeq)
	req.Header.Set("X-Test-Id", id)
	resp, err := e.client(src).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return await(t, got, id)
}

var clientSpoofs = map[string]string{
	"X-Forwarded-For": "10.6.6.6", "X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "globex.apps.localhost",
	"Forwarded": "for=10.6.6.6;host=globex.apps.localhost;proto=https", "X-Real-IP": "10.6.6.6",
	"True-Client-IP": "10.6.6.6", "Client-IP": "10.6.6.6", "X-Client-IP": "10.6.6.6", "CF-Connecting-IP": "10.6.6.6",
}

func checkHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if vs := h.Values(k); v == "" && len(vs) > 0 || v != "" && (len(vs) != 1 || vs[0] != v) {
			t.Errorf("%s at the replica: %q, want %q", k, vs, v)
		}
	}
}

// The replica behind the edge's reverse_proxy learns the true client: the
// edge's X-Forwarded-*, Forwarded and X-Real-IP, none of the client's; and
// request trailers never carry Host, Neo-* or a field the edge sets.
func TestEdgeForwardedHeaders(t *testing.T) {
	replica, got := recordingReplica(t)
	e := startForwardedEdge(t, replica, "import "+harness.RepoRoot()+"/caddyfiles/snippets/edge-global.caddy")
	_, port, _ := net.SplitHostPort(e.https)
	host := "acme-dev.apps.localhost:" + port
	r := e.get(t, "127.0.0.5", clientSpoofs, got)
	checkHeaders(t, r.header, map[string]string{
		"X-Forwarded-For": "127.0.0.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": host,
		"Forwarded": `for=127.0.0.5;host="` + host + `";proto=https`, "X-Real-IP": "127.0.0.5",
		"True-Client-IP": "", "Client-IP": "", "X-Client-IP": "", "CF-Connecting-IP": "",
	})

	// Trailers, over HTTP/1.1 with chunked framing.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.https, &tls.Config{RootCAs: e.roots.RootCAs, ServerName: "acme-dev.apps.localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /orders/x HTTP/1.1\r\nHost: %s\r\nX-Test-Id: trailers\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"+
		"Trailer: Neo-Tenant, X-Checksum, X-Forwarded-For, Forwarded, X-Real-IP, Neo_App\r\n\r\n"+
		"5\r\nhello\r\n0\r\nNeo-Tenant: globex\r\nHost: globex.apps.localhost\r\nX-Checksum: abc\r\nX-Forwarded-For: 10.6.6.6\r\n"+
		"Forwarded: for=10.6.6.6\r\nX-Real-IP: 10.6.6.6\r\nNeo_App: billing\r\nNeo-Stage: prod\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("chunked POST with trailers: %d", resp.StatusCode)
	}
	r = await(t, got, "trailers")
	if r.body != "hello" {
		t.Errorf("body %q", r.body)
	}
	for k, vs := range r.trailer {
		if k != "X-Checksum" || len(vs) != 1 || vs[0] != "abc" {
			t.Errorf("trailer %s: %q reached the replica", k, vs)
		}
	}
	if r.trailer.Get("X-Checksum") != "abc" {
		t.Errorf("the declared, allowed trailer X-Checksum did not arrive: %v", r.trailer)
	}
	checkHeaders(t, r.header, map[string]string{"X-Forwarded-For": "127.0.0.1", "Neo-Tenant": "", "Neo-Stage": "", "Neo-App": ""})
}

// Behind a trusted proxy (a CDN at 127.0.0.9, with Caddy's trusted_proxies
// and client_ip_headers) the CDN's values are kept and appended to, and the
// client address it reported is the replica's X-Real-IP; the same headers
// from any other peer are replaced.
func TestEdgeForwardedTrustedProxy(t *testing.T) {
	replica, got := recordingReplica(t)
	e := startForwardedEdge(t, replica, "servers {\n\t\ttrusted_proxies static 127.0.0.9/32\n\t\tclient_ip_headers X-Forwarded-For\n\t}")
	_, port, _ := net.SplitHostPort(e.https)
	host := "acme-dev.apps.localhost:" + port
	cdn := map[string]string{
		"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com",
		"Forwarded": "for=198.51.100.7;host=shop.example.com;proto=https", "CF-Connecting-IP": "10.6.6.6", "X-Real-IP": "10.6.6.6",
	}
	r := e.get(t, "127.0.0.9", cdn, got)
	checkHeaders(t, r.header, map[string]string{
		"X-Forwarded-For": "198.51.100.7, 127.0.0.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com",
		"Forwarded": `for=198.51.100.7;host=shop.example.com;proto=https, for=127.0.0.9;host="` + host + `";proto=https`,
		"X-Real-IP": "198.51.100.7", "CF-Connecting-IP": "",
	})
	r = e.get(t, "127.0.0.5", cdn, got)
	checkHeaders(t, r.header, map[string]string{
		"X-Forwarded-For": "127.0.0.5", "X-Forwarded-Host": host, "X-Real-IP": "127.0.0.5",
		"Forwarded": `for=127.0.0.5;host="` + host + `";proto=https`,
	})
	if strings.Contains(fmt.Sprint(r.header), "198.51.100.7") {
		t.Errorf("an untrusted peer's client address reached the replica: %v", r.header)
	}
}

// The runtime path: the edge's Forwarded (and no client copy of a
// client-address header) reaches the replica through NATS and a stage
// gateway; request trailers the edge controls do not.
func TestEdgeForwardedOverNATS(t *testing.T) {
	replica, got := recordingReplica(t)
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	admin, edge, stage := ports[0], ports[1], ports[2]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	servers 127.0.0.1:%d {
		name stage
	}
	neo_nats {
		embedded {
			anonymous
		}
	}
	neo_nats_gateway az-a {
		server stage
		stage prod
		zone az-a
	}
}

import %s/caddyfiles/snippets/edge.caddy

http://:%d {
	bind 127.0.0.1
	import neo_edge {
		reverse_proxy nats {
			transport neo_nats {
				subject neo.rt.prod.{neo.zone}.acme.orders
				zones az-a
			}
		}
	}
}

http://:%[2]d {
	bind 127.0.0.1
	reverse_proxy %[5]s
}
`, admin, stage, harness.RepoRoot(), edge, replica)
	inst := harness.Start(t, harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", edge)}})
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", edge))
	}}}
	url := fmt.Sprintf("http://acme.apps.localhost:%d/orders/x", edge)
	var r recorded
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range clientSpoofs {
			req.Header.Set(k, v)
		}
		id := fmt.Sprintf("nats-%d", i)
		req.Header.Set("X-Test-Id", id)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				r = await(t, got, id)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer over NATS: %v\n%s", err, inst.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkHeaders(t, r.header, map[string]string{
		"Forwarded": fmt.Sprintf(`for=127.0.0.5;host="acme.apps.localhost:%d";proto=http`, edge),
		"X-Real-IP": "127.0.0.5", "True-Client-IP": "", "Client-IP": "", "X-Client-IP": "", "CF-Connecting-IP": "",
	})
	if strings.Contains(fmt.Sprint(r.header), "10.6.6.6") {
		t.Errorf("a client-sent address reached the replica: %v", r.header)
	}
}
