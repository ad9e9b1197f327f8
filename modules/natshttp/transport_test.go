package natshttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/projectneo/caddy-neo/internal/natstest"
	"github.com/projectneo/caddy-neo/internal/route"
	"github.com/projectneo/caddy-neo/modules/echo"
	"github.com/projectneo/caddy-neo/modules/natsconn"
	_ "github.com/projectneo/caddy-neo/modules/neo" // the tenant registry of TestZoneFailoverFromRegistry
)

func do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, body
}

func mustRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func report(t testing.TB, body []byte) echo.Report {
	t.Helper()
	var rep echo.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	return rep
}

// eachProtocolVersion runs f on a fresh topology for each framing version
// (the edge's protocol_version; gateways answer in kind).
func eachProtocolVersion(t *testing.T, s *server.Server, f func(t *testing.T, tp topo)) {
	for _, v := range []int{3, 2, 1} {
		t.Run(fmt.Sprintf("protocol_version %d", v), func(t *testing.T) {
			tp := newTopo(t, s)
			tp.transport = map[string]any{"protocol_version": v}
			load(t, tp)
			f(t, tp)
		})
	}
}

func TestFidelity(t *testing.T) {
	eachProtocolVersion(t, startNATS(t, 0), testFidelity)
}

func testFidelity(t *testing.T, tp topo) {
	t.Run("methods", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"} {
			req, _ := http.NewRequest(m, tp.url("/orders/m"), strings.NewReader("x"))
			resp, body := do(t, nil, req)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", m, resp.StatusCode)
			}
			if rep := report(t, body); rep.Method != m || rep.BodyLength != 1 {
				t.Fatalf("%s: %+v", m, rep)
			}
		}
		req, _ := http.NewRequest("HEAD", tp.url("/orders/m"), nil)
		resp, body := do(t, nil, req)
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength <= 0 {
			t.Fatalf("HEAD: %d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
		}
	})
	t.Run("headers and query", func(t *testing.T) {
		req, _ := http.NewRequest("GET", tp.url("/orders/a%2Fb/%C3%A9?q=a%20b&x=%2F&x=2&e=%C3%A9&empty="), nil)
		req.Header.Add("Neo-Repeated", "one")
		req.Header.Add("Neo-Repeated", "two, three")
		req.Header.Set("Neo-Tenant", "evil") // overwritten from the subject
		req.Header.Set("Connection", "close, Neo-Hop")
		req.Header.Set("Neo-Hop", "must not pass")
		resp, body := do(t, nil, req)
		rep := report(t, body)
		if resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
		if rep.Path != "/orders/a%2Fb/%C3%A9" {
			t.Errorf("path %q", rep.Path)
		}
		if rep.RawQuery != "q=a%20b&x=%2F&x=2&e=%C3%A9&empty=" {
			t.Errorf("query %q", rep.RawQuery)
		}
		if got := rep.NeoHeaders["Neo-Repeated"]; len(got) != 2 || got[0] != "one" || got[1] != "two, three" {
			t.Errorf("repeated header %q", got)
		}
		if got := rep.NeoHeaders["Neo-Tenant"]; len(got) != 1 || got[0] != "acme" {
			t.Errorf("Neo-Tenant %q, want the subject's acme", got)
		}
		if _, ok := rep.NeoHeaders["Neo-Hop"]; ok {
			t.Errorf("hop-by-hop header named in Connection was forwarded")
		}
		if rep.Host != "127.0.0.1:"+strconv.Itoa(tp.edgePort) {
			t.Errorf("host %q", rep.Host)
		}
		if resp.Header.Get("Neo-Echo-Replica") != "r1" {
			t.Errorf("response header lost: %v", resp.Header)
		}
	})
	t.Run("statuses", func(t *testing.T) {
		for _, code := range []int{200, 204, 304, 404, 500, 503} {
			req, _ := http.NewRequest("GET", tp.url("/orders/s"), nil)
			req.Header.Set("Echo-Status", strconv.Itoa(code))
			resp, body := do(t, nil, req)
			if resp.StatusCode != code {
				t.Fatalf("want %d, got %d: %s", code, resp.StatusCode, body)
			}
			if (code == 204 || code == 304) && len(body) != 0 {
				t.Fatalf("%d with a body", code)
			}
		}
	})
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// fillerSHA is the SHA-256 of n bytes of echo's filler.
func fillerSHA(n int64) string {
	h := sha256.New()
	_, _ = io.CopyN(h, &echo.Filler{}, n)
	return hex.EncodeToString(h.Sum(nil))
}

// TestHeadTooLarge: a request head that cannot fit in one message of the
// server's max_payload is answered 431 by the edge itself.
func TestHeadTooLarge(t *testing.T) {
	const mp = 8 << 10
	eachProtocolVersion(t, startNATS(t, mp), func(t *testing.T, tp topo) {
		req, _ := http.NewRequest("GET", tp.url("/orders/huge"), nil)
		req.Header.Set("Neo-Huge", strings.Repeat("h", mp))
		resp, body := do(t, nil, req)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Neo-Nats-Synthetic") != "1" {
			t.Fatalf("status %d %v: %s", resp.StatusCode, resp.Header, body)
		}
		// just under the limit it goes through
		req.Header.Set("Neo-Huge", strings.Repeat("h", mp/2))
		if resp, body := do(t, nil, req); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

// download sends req, whose response must be 200 with n bytes of echo's
// filler, and returns the response (its body read and closed).
func download(t *testing.T, req *http.Request, n int64) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if got != n || hex.EncodeToString(h.Sum(nil)) != fillerSHA(n) {
		t.Fatalf("got %d bytes, sha mismatch", got)
	}
	return resp
}

// chunkedReader hides the length so the request is sent chunked.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

const bodiesMaxPayload = 64 << 10 // small max_payload: many frames per body

func TestBodies(t *testing.T) {
	eachProtocolVersion(t, startNATS(t, bodiesMaxPayload), testBodies)
}

func testBodies(t *testing.T, tp topo) {
	const mp = bodiesMaxPayload
	sizes := []int64{0, 1, mp - 1, mp, mp + 1, 10 << 20}
	if !testing.Short() {
		sizes = append(sizes, 100<<20)
	}
	t.Run("big heads", func(t *testing.T) {
		// 16 KiB request and response heads, with bodies that fit a message
		// only without them: the heads go alone and the bodies follow
		n := int64(mp - 2048)
		req, _ := http.NewRequest("POST", tp.url("/orders/bighead"), io.LimitReader(&echo.Filler{}, n))
		req.ContentLength = n
		req.Header.Set("Neo-Big-Request", strings.Repeat("q", 16<<10))
		req.Header.Set("Echo-Body-Bytes", strconv.FormatInt(n, 10))
		resp := download(t, req, n)
		if resp.Header.Get("Neo-Big") != bigHeadValue {
			t.Fatalf("big response header: %d bytes", len(resp.Header.Get("Neo-Big")))
		}
		if resp.Header.Get("Neo-Echo-Request-Sha256") != fillerSHA(n) || resp.Header.Get("Neo-Echo-Request-Length") != strconv.FormatInt(n, 10) {
			t.Fatalf("request body: %s bytes, sha %s", resp.Header.Get("Neo-Echo-Request-Length"), resp.Header.Get("Neo-Echo-Request-Sha256"))
		}
	})
	for _, n := range sizes {
		t.Run(fmt.Sprintf("upload %d", n), func(t *testing.T) {
			for _, chunked := range []bool{false, true} {
				h := sha256.New()
				var body io.Reader = io.TeeReader(io.LimitReader(&echo.Filler{}, n), h)
				if chunked {
					body = chunkedReader{body}
				}
				req, _ := http.NewRequest("POST", tp.url("/orders/up"), body)
				if !chunked {
					req.ContentLength = n
				}
				resp, rb := do(t, nil, req)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, rb)
				}
				rep := report(t, rb)
				if rep.BodyLength != n || rep.BodySHA256 != hex.EncodeToString(h.Sum(nil)) {
					t.Fatalf("chunked=%v: gateway got %d bytes sha %s", chunked, rep.BodyLength, rep.BodySHA256)
				}
			}
		})
		t.Run(fmt.Sprintf("download %d", n), func(t *testing.T) {
			req, _ := http.NewRequest("GET", tp.url("/orders/down"), nil)
			req.Header.Set("Echo-Body-Bytes", strconv.FormatInt(n, 10))
			download(t, req, n)
		})
	}
}

func TestServerSentEvents(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	req, _ := http.NewRequest("GET", tp.url("/orders/events"), nil)
	req.Header.Set("Echo-Events", "3")
	req.Header.Set("Echo-Interval", "200ms")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	natstest.EventGaps(t, resp.Body, 3, 200*time.Millisecond)
}

func zoneOf(t testing.TB, tp topo) (int, string) {
	req, _ := http.NewRequest("GET", tp.url("/orders/z"), nil)
	resp, body := do(t, nil, req)
	if resp.StatusCode != 200 {
		return resp.StatusCode, string(body)
	}
	return 200, report(t, body).NeoHeaders["Neo-Zone"][0]
}

func TestZoneFailover(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	if code, z := zoneOf(t, tp); code != 200 || z != "az-a" {
		t.Fatalf("both gateways up: %d %s, want az-a", code, z)
	}
	tp.gateways = []map[string]any{gw("az-b")}
	load(t, tp)
	if code, z := zoneOf(t, tp); code != 200 || z != "az-b" {
		t.Fatalf("az-a stopped: %d %s, want az-b", code, z)
	}
	// the request's own zone is tried first
	req, _ := http.NewRequest("GET", tp.url("/orders/z"), nil)
	req.Header.Set("X-Test-Zone", "az-b")
	tp.gateways = []map[string]any{gw("az-a"), gw("az-b")}
	load(t, tp)
	if _, body := do(t, nil, req); report(t, body).NeoHeaders["Neo-Zone"][0] != "az-b" {
		t.Fatal("own zone az-b not preferred")
	}
	tp.gateways = nil
	load(t, tp)
	start := time.Now()
	code, _ := zoneOf(t, tp)
	if took := time.Since(start); code != 503 || took > 100*time.Millisecond {
		t.Fatalf("no gateway: status %d after %v, want 503 within 100ms", code, took)
	}
}

func TestTwentyReloadsOneConnection(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	cz, _ := s.Connz(nil)
	firstCid := cz.Conns[0].Cid
	flushActive(t) // the server has seen every SUB sent so far
	subs := s.NumSubscriptions()
	// the first load dialled once to check the credentials, then connected
	vz0, _ := s.Varz(nil)
	for i := 0; i < 20; i++ {
		tp.marker = strconv.Itoa(i)
		load(t, tp)
		if code, _ := zoneOf(t, tp); code != 200 {
			t.Fatalf("reload %d: status %d", i, code)
		}
	}
	if n := s.NumClients(); n != 1 {
		t.Fatalf("after 20 reloads the server has %d clients, want 1", n)
	}
	cz, _ = s.Connz(nil)
	if cz.NumConns != 1 || cz.Conns[0].Name != "caddy-neo-default" || cz.Conns[0].Cid != firstCid {
		t.Fatalf("connz: %+v (first connection id %d)", cz, firstCid)
	}
	// reply subscriptions and micro endpoints are replaced, not accumulated
	flushActive(t)
	for deadline := time.Now().Add(3 * time.Second); s.NumSubscriptions() != subs; {
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions: %d after the first load, %d after 20 reloads", subs, s.NumSubscriptions())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// not one connection opened and another closed per reload: one, ever
	if vz, _ := s.Varz(nil); vz.TotalConnections != vz0.TotalConnections || vz0.TotalConnections > 2 {
		t.Fatalf("the server saw %d connections at the first load and %d after 20 reloads, want at most 2 (a credential check, the connection) and no more", vz0.TotalConnections, vz.TotalConnections)
	}
	// a changed connection is a new connection, and the old one goes
	tp.natsURL = strings.Replace(tp.natsURL, "127.0.0.1", "localhost", 1)
	load(t, tp)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cz, _ = s.Connz(nil)
		if cz.NumConns == 1 && cz.Conns[0].Cid != firstCid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a connection change: %+v", cz)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSubjectInjection(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	spy, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var mu sync.Mutex
	var seen []string
	sub, _ := spy.Subscribe(">", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "neo.") {
			mu.Lock()
			seen = append(seen, m.Subject)
			mu.Unlock()
		}
	})
	defer sub.Unsubscribe()
	_ = spy.Flush()
	cases := []struct{ name, header, value string }{
		{"dot in tenant", "X-Test-Tenant", "acme.orders"},
		{"star tenant", "X-Test-Tenant", "*"},
		{"gt tenant", "X-Test-Tenant", ">"},
		{"space app", "X-Test-App", "or ders"},
		{"tab app", "X-Test-App", "or\tders"},
		{"unicode app", "X-Test-App", "ordérs"},
		{"wildcard stage", "X-Test-Stage", "prod.*"},
		{"empty app", "X-Test-App", ""},
		{"zone injection", "X-Test-Zone", "az-a.globex"},
		{"long", "X-Test-Tenant", strings.Repeat("a", 200)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tp.url("/orders/i"), nil)
			req.Header[c.header] = []string{c.value}
			resp, body := do(t, nil, req)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
		})
	}
	// a path or header with the same characters is carried, not routed
	req, _ := http.NewRequest("GET", tp.url("/orders/a.b/*/>/%20/%C3%A9"), nil)
	req.Header.Set("Neo-Extra", "x.y.* >")
	if resp, body := do(t, nil, req); resp.StatusCode != 200 || report(t, body).Path != "/orders/a.b/%2A/%3E/%20/%C3%A9" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_ = spy.Flush()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, subj := range seen {
		if subj != "neo.rt.prod.az-a.acme.orders" {
			t.Errorf("a request reached subject %q", subj)
		}
	}
	if len(seen) != 1 {
		t.Errorf("want exactly one request on the wire, saw %q", seen)
	}
}

// hangListener accepts connections and never answers.
func hangListener(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l.Addr().String()
}

func TestTimeoutsAndClientGone(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.transport = map[string]any{"response_header_timeout": "300ms", "chunk_timeout": "2s"}
	load(t, tp)

	// slow upstream behind the gateway: nothing comes back → 504 in time
	hang := hangListener(t)
	cfg := tp.json(t)
	cfg = bytes.Replace(cfg, []byte(`{"handler":"neo_echo"`), []byte(`{"handler":"reverse_proxy","upstreams":[{"dial":"`+hang+`"}]},{"handler":"neo_echo"`), 1)
	if err := loadRaw(cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	req, _ := http.NewRequest("GET", tp.url("/orders/slow"), nil)
	resp, _ := do(t, nil, req)
	if took := time.Since(start); resp.StatusCode != 504 || took > 2*time.Second {
		t.Fatalf("status %d after %v, want 504 after about 300ms", resp.StatusCode, took)
	}
	load(t, tp)

	// a client that goes away stops the work at the gateway
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", tp.url("/orders/events"), nil)
	req.Header.Set("Echo-Events", "100")
	req.Header.Set("Echo-Interval", "50ms")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = resp.Body.Read(make([]byte, 100))
	if v := testutil.ToFloat64(gatewayInFlight.WithLabelValues("prod-az-a")); v != 1 {
		t.Fatalf("in flight %v, want 1", v)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(2 * time.Second)
	for testutil.ToFloat64(gatewayInFlight.WithLabelValues("prod-az-a")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("gateway still serving 2s after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGatewayDrainsOnReload(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	load(t, tp)
	const n = 5
	results, started := natstest.StartStreams(n, 5, func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", tp.url("/orders/events"), nil)
		req.Header.Set("Echo-Events", "5")
		req.Header.Set("Echo-Interval", "100ms")
		return http.DefaultClient.Do(req)
	})
	<-started // every stream under way

	tp.gateways = []map[string]any{gw("az-b")} // az-a leaves while serving
	load(t, tp)
	for i := 0; i < n; i++ {
		if r := <-results; r != "" {
			t.Fatalf("request cut by the reload: %s", r)
		}
	}
}

// reloadMidStream starts four event streams through a topology whose
// gateways let a reload go at once (drain_timeout 10ms, as gateways in other
// processes would), applies change mid-stream, reloads, and checks that every
// response arrived whole and the next request is served.
func reloadMidStream(t *testing.T, s *server.Server, change func(tp *topo)) {
	t.Helper()
	tp := newTopo(t, s)
	quick := func(zone string) map[string]any {
		g := gw(zone)
		g["drain_timeout"] = "10ms"
		return g
	}
	tp.gateways = []map[string]any{quick("az-a"), quick("az-b")}
	load(t, tp)
	const n = 4
	url := tp.url("/orders/events") // tp changes below
	results, started := natstest.StartStreams(n, 6, func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Echo-Events", "6")
		req.Header.Set("Echo-Interval", "100ms")
		return http.DefaultClient.Do(req)
	})
	<-started // every stream under way
	change(&tp)
	load(t, tp)
	for i := 0; i < n; i++ {
		if r := <-results; r != "" {
			t.Fatalf("response cut by the reload: %s", r)
		}
	}
	if code, _ := zoneOf(t, tp); code != 200 {
		t.Fatalf("after the reload: %d", code)
	}
}

// TestReloadKeepsResponseStreams: Caddy does not wait for the old servers'
// requests on a reload and cleans up the old transport while they still
// stream; their responses must reach the client whole. Only the edge's old
// transport carries the responses on.
func TestReloadKeepsResponseStreams(t *testing.T) {
	reloadMidStream(t, startNATS(t, 0), func(tp *topo) { tp.marker = "reloaded" })
}

// TestConnectionChangeKeepsResponseStreams: a reload that changes the
// NATS connection (new credentials, servers; here the server's address
// spelled another way) replaces it, and the old connection stays open for
// the responses still streaming through it: they arrive whole. It then
// closes (natsconn.Hold).
func TestConnectionChangeKeepsResponseStreams(t *testing.T) {
	// no grace: the holds alone keep the old connection open
	grace := natsconn.ReleaseGrace
	natsconn.ReleaseGrace = 0
	t.Cleanup(func() { natsconn.ReleaseGrace = grace })
	s := startNATS(t, 0)
	var first uint64
	reloadMidStream(t, s, func(tp *topo) {
		cz, _ := s.Connz(nil)
		first = cz.Conns[0].Cid
		tp.natsURL = strings.Replace(tp.natsURL, "127.0.0.1", "localhost", 1)
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		cz, _ := s.Connz(nil)
		if cz.NumConns == 1 && cz.Conns[0].Cid != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced connection stays: %+v", cz)
		}
	}
}

func TestNATSRestartUnderLoad(t *testing.T) {
	port := freePort(t)
	s := startNATSPort(t, port)
	tp := newTopo(t, s)
	tp.transport = map[string]any{"response_header_timeout": "1s", "chunk_timeout": "1s"}
	load(t, tp)
	if code, _ := zoneOf(t, tp); code != 200 {
		t.Fatal(code)
	}
	time.Sleep(100 * time.Millisecond)
	before := goroutinesBut("(*workers).loop")

	client := &http.Client{Timeout: 5 * time.Second}
	traffic := natstest.StartLoad(4, 2000, func() (*http.Response, error) { return client.Get(tp.url("/orders/load")) })
	time.Sleep(200 * time.Millisecond)
	s.Shutdown()
	s.WaitForShutdown()
	time.Sleep(1 * time.Second)
	back := time.Now()
	s2 := startNATSPort(t, port)
	defer s2.Shutdown()
	resumed, ok := traffic.WaitOKAfter(back, 2*time.Second)
	if !ok {
		traffic.Stop()
		t.Fatal("service did not resume within 2s of the server's return")
	}
	t.Logf("service resumed %v after the server returned", resumed)
	if v := metricValue(t, "caddy_neo_nats_reconnects_total", "connection", "default"); v < 1 {
		t.Errorf("caddy_neo_nats_reconnects_total = %v after a server restart", v)
	}
	if v := metricValue(t, "caddy_neo_nats_connection_up", "connection", "default"); v != 1 {
		t.Errorf("caddy_neo_nats_connection_up = %v after reconnecting", v)
	}
	worst := traffic.Stop()
	if worst > 2500*time.Millisecond {
		t.Fatalf("a request waited %v, longer than its 1s timeout allows", worst)
	}
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for {
		after := goroutinesBut("(*workers).loop")
		if after <= before+2 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goroutinesBut counts the goroutines whose stack does not contain skip. The
// restart test leaves out the gateway's idle workers: they wait workerIdle
// (30s) for the next request by design, and how many the load started
// depends on how busy the machine was.
func goroutinesBut(skip string) int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && !strings.Contains(g, skip) {
			n++
		}
	}
	return n
}

// A handler that panics behind the gateway gives the client a 502 at once
// (not the edge's head timeout), or, after the head, a broken body; the
// gateway keeps serving.
func TestGatewayHandlerPanic(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.transport = map[string]any{"response_header_timeout": "20s", "chunk_timeout": "20s"}
	load(t, tp)

	before := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "panic"))
	start := time.Now()
	resp, body := do(t, nil, mustRequest(t, "GET", tp.url("/panic"), nil))
	if took := time.Since(start); resp.StatusCode != 502 || took > 10*time.Second {
		t.Fatalf("panic before the head: status %d after %v, body %q; want 502 at once", resp.StatusCode, took, body)
	}
	if got := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "panic")); got != before+1 {
		t.Fatalf("panic outcome counted %v times, want 1", got-before)
	}

	start = time.Now()
	resp2, err := http.Get(tp.url("/panic?late"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if took := time.Since(start); resp2.StatusCode != 200 || err == nil || took > 10*time.Second {
		t.Fatalf("panic after the head: status %d, body error %v after %v; want 200 and a broken body at once", resp2.StatusCode, err, took)
	}

	// http.ErrAbortHandler is how handlers abort a response: the same broken
	// body, counted as aborted, not as a panic
	panics := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "panic")) + testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-b", "panic"))
	aborted := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "aborted"))
	resp3, err := http.Get(tp.url("/panic?abort"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp3.Body)
	resp3.Body.Close()
	if resp3.StatusCode != 200 || err == nil {
		t.Fatalf("aborted after the head: status %d, body error %v; want 200 and a broken body", resp3.StatusCode, err)
	}
	if got := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "aborted")); got != aborted+1 {
		t.Fatalf("aborted outcome counted %v times, want 1", got-aborted)
	}
	if got := testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-a", "panic")) + testutil.ToFloat64(gatewayRequests.WithLabelValues("prod-az-b", "panic")); got != panics {
		t.Fatalf("an aborted response counted as a panic")
	}

	if resp, _ := do(t, nil, mustRequest(t, "GET", tp.url("/orders/ok"), nil)); resp.StatusCode != 200 {
		t.Fatalf("after the panics: %d", resp.StatusCode)
	}
}

// TestProtocolVersionOnWire checks what each framing version puts on the
// wire: version 2 and 3 send the head and the response without NATS
// headers, version 1 with them; version 3 sends the data and credit frames
// of a streamed body without NATS headers too (compact frames), 1 and 2
// with them (a plain subscriber sees copies of every frame).
func TestProtocolVersionOnWire(t *testing.T) {
	s := startNATS(t, 0)
	eachProtocolVersion(t, s, func(t *testing.T, tp topo) {
		version := int(t.Name()[len(t.Name())-1] - '0')
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		heads, err := nc.SubscribeSync(route.All)
		if err != nil {
			t.Fatal(err)
		}
		resps, err := nc.SubscribeSync("_INBOX.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", tp.url("/orders/wire"), nil)
		if resp, body := do(t, nil, req); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		v2 := version >= 2
		for what, sub := range map[string]*nats.Subscription{"head": heads, "response": resps} {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got := isV2(len(m.Header), m.Data); got != v2 {
				t.Fatalf("%s: version 2 framing %v, want %v (headers %v)", what, got, v2, m.Header)
			}
			if f, err := parseFrame(m); err != nil || f.v2 != v2 {
				t.Fatalf("%s: %+v %v", what, f, err)
			}
		}

		// a request body in 1 KiB frames (the edge's chunk_size): data
		// frames to the gateway, credit back
		tp.transport["chunk_size"] = 1024
		load(t, tp)
		const size = 64 << 10
		req, _ = http.NewRequest("POST", tp.url("/orders/wire"), bytes.NewReader(bytes.Repeat([]byte("b"), size)))
		if resp, body := do(t, nil, req); resp.StatusCode != 200 || report(t, body).BodyLength != size {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		_ = nc.Flush()
		compact := map[string]int{}
		headers := map[string]int{}
		for {
			m, err := resps.NextMsg(200 * time.Millisecond)
			if err != nil {
				break
			}
			kind := msgKind(m)
			if kind != kindData && kind != kindCredit {
				continue
			}
			f, err := parseFrame(m)
			if err != nil {
				t.Fatalf("%s frame: %v", kind, err)
			}
			if len(m.Header) == 0 {
				compact[kind]++
			} else if f.get(hdrInbox) == "" { // the gateway's first credit names its inbox, in version 1
				headers[kind]++
			}
		}
		t.Logf("compact frames %v, with headers %v", compact, headers)
		if version == 3 {
			if compact[kindData] == 0 || compact[kindCredit] == 0 || len(headers) > 0 {
				t.Fatalf("version 3: want data and credit frames compact only, got compact %v, with headers %v", compact, headers)
			}
		} else if len(compact) > 0 || headers[kindData] == 0 {
			t.Fatalf("version %d: want no compact frames, got compact %v, with headers %v", version, compact, headers)
		}
	})
}

// TestZoneFailoverFromRegistry: a transport without zones takes the failover
// order of the config's tenant registry (zones az-a az-b: az-b after az-a),
// so the zones are declared once.
func TestZoneFailoverFromRegistry(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.transport = map[string]any{"zones": nil}
	tp.gateways = []map[string]any{gw("az-b")}
	var cfg map[string]any
	if err := json.Unmarshal(tp.json(t), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["apps"].(map[string]any)["neo"] = map[string]any{"zone": "az-a", "zones": []string{"az-a", "az-b"}, "store": map[string]any{"module": "file", "dir": t.TempDir()}}
	raw, _ := json.Marshal(cfg)
	if err := loadRaw(raw); err != nil {
		t.Fatal(err)
	}
	if code, z := zoneOf(t, tp); code != 200 || z != "az-b" {
		t.Fatalf("no gateway in az-a: %d %s, want the registry's next zone az-b", code, z)
	}
}
