package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/adapttest"
	"github.com/projectneo/caddy-neo/internal/natstest"
	"github.com/projectneo/caddy-neo/modules/echo"
)

// natsTopo is one caddy process holding an edge that sends over NATS, an
// edge that sends over HTTP (for comparisons), stage gateways for az-a and
// az-b, and an echo replica; the nats-server runs in the test process.
type natsTopo struct {
	t                                 testing.TB
	srv                               *server.Server
	natsPort                          int
	admin, edge, httpEdge, stage, rep int
	inst                              *harness.Instance
	// lean: the edge has neo_nats_sockets (stream_close_delay 2s) and the
	// stage server transport neo_http, so the roles carry WebSockets
	// themselves; else reverse_proxy holds them
	lean bool
	// closeDelay: the edge's stream_close_delay when lean (default 2s)
	closeDelay string
}

const natsTopoCaddyfile = `{
	admin 127.0.0.1:%[1]d
	servers 127.0.0.1:%[4]d {
		name stage
	}
	neo_nats {
		connection default {
			servers nats://127.0.0.1:%[6]d
			reconnect_wait 50ms 500ms
		}
	}
%[7]s}

# edge → NATS → gateway
http://:%[2]d {
	bind 127.0.0.1
	%[8]s
	reverse_proxy nats {
		transport neo_nats {
			subject neo.rt.prod.{neo.zone}.{http.request.header.X-Tenant}.{http.request.header.X-App}
			zones az-a az-b
			response_header_timeout 2s
			chunk_timeout 2s
		}
	}
}

# edge → HTTP → gateway (the same stage routes)
http://:%[3]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[4]d {
		header_up Neo-Tenant {http.request.header.X-Tenant}
		header_up Neo-App {http.request.header.X-App}
	}
}

# the stage's routes, served by the gateways (a reload restarts the replica's
# listener: a GET that meets a closed keep-alive connection is retried)
http://:%[4]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[5]d {
		lb_try_duration 2s
		%[9]s
	}
}

# the app replica
http://:%[5]d {
	bind 127.0.0.1
	neo_echo {
		replica r1
		max_response_bytes 2147483648
	}
}
`

func gatewayBlock(zones ...string) string {
	var b strings.Builder
	for _, z := range zones {
		fmt.Fprintf(&b, "\tneo_nats_gateway %s {\n\t\tserver stage\n\t\tstage prod\n\t\tzone %s\n\t\tdrain_timeout 5s\n\t}\n", z, z)
	}
	return b.String()
}

func startNATSServer(t testing.TB, port int) *server.Server {
	t.Helper()
	return startNATSServerOpts(t, &server.Options{Host: "127.0.0.1", Port: port})
}

// startNATSServerOpts runs the real nats-server with opts (signals and its
// own logging off) and waits until it accepts clients. The caller shuts it
// down (a test Cleanup, or a restart test).
func startNATSServerOpts(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	return s
}

func startNATSTopo(t testing.TB) *natsTopo { t.Helper(); return startNATSTopoLean(t, false) }

// startNATSTopoLean is startNATSTopo, with the lean WebSocket path when lean.
func startNATSTopoLean(t testing.TB, lean bool) *natsTopo {
	t.Helper()
	ports, err := harness.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	nt := &natsTopo{t: t, natsPort: ports[0], admin: ports[1], edge: ports[2], httpEdge: ports[3], stage: ports[4], rep: ports[5], lean: lean}
	nt.srv = startNATSServer(t, nt.natsPort)
	t.Cleanup(func() { nt.srv.Shutdown() })
	dir := t.TempDir()
	cfg := dir + "/Caddyfile"
	if err := os.WriteFile(cfg, []byte(nt.caddyfile("az-a", "az-b")), 0o644); err != nil {
		t.Fatal(err)
	}
	nt.inst = harness.Start(t, harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", nt.admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", nt.edge), fmt.Sprintf("127.0.0.1:%d", nt.rep)},
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := nt.get("/ready", nil); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge never served over NATS\n%s", nt.inst.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nt
}

func (nt *natsTopo) caddyfile(zones ...string) string {
	sockets, transport := "", ""
	if nt.lean {
		d := nt.closeDelay
		if d == "" {
			d = "2s"
		}
		sockets, transport = "neo_nats_sockets {\n\t\tstream_close_delay "+d+"\n\t}", "transport neo_http"
	}
	return fmt.Sprintf(natsTopoCaddyfile, nt.admin, nt.edge, nt.httpEdge, nt.stage, nt.rep, nt.natsPort, gatewayBlock(zones...), sockets, transport)
}

// reload loads the topology with the given gateways through the admin API.
func (nt *natsTopo) reload(zones ...string) {
	nt.t.Helper()
	js, err := adapttest.Adapt(nt.t, "Caddyfile", []byte(nt.caddyfile(zones...)))
	if err != nil {
		nt.t.Fatal(err)
	}
	code, body, err := nt.inst.Admin("POST", "/load", js)
	if err != nil || code != 200 {
		nt.t.Fatalf("reload: %d %s %v", code, body, err)
	}
}

func (nt *natsTopo) url(port int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

func (nt *natsTopo) get(path string, hdr map[string]string) (int, echo.Report) {
	req, _ := http.NewRequest("GET", nt.url(nt.edge, path), nil)
	req.Header.Set("X-Tenant", "acme")
	req.Header.Set("X-App", "orders")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, echo.Report{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep echo.Report
	if resp.StatusCode == 200 {
		_ = json.Unmarshal(body, &rep)
	}
	return resp.StatusCode, rep
}

func TestNATSBinaryFidelity(t *testing.T) {
	nt := startNATSTopo(t)
	t.Run("request line and headers", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
			req, _ := http.NewRequest(m, nt.url(nt.edge, "/orders/a%2Fb/%C3%A9?q=a%20b&x=1&x=2"), strings.NewReader("hello"))
			req.Header.Set("X-Tenant", "acme")
			req.Header.Set("X-App", "orders")
			req.Header.Add("Neo-Multi", "1")
			req.Header.Add("Neo-Multi", "2")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var rep echo.Report
			if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", m, resp.StatusCode, body)
			}
			if rep.Method != m || rep.Path != "/orders/a%2Fb/%C3%A9" || rep.RawQuery != "q=a%20b&x=1&x=2" ||
				len(rep.NeoHeaders["Neo-Multi"]) != 2 || rep.BodyLength != 5 || rep.NeoHeaders["Neo-Zone"][0] != "az-a" {
				t.Fatalf("%s: %+v", m, rep)
			}
		}
	})
	t.Run("statuses", func(t *testing.T) {
		for _, code := range []int{200, 204, 304, 404, 500} {
			got, _ := nt.get("/s", map[string]string{"Echo-Status": strconv.Itoa(code)})
			if got != code {
				t.Fatalf("want %d, got %d", code, got)
			}
		}
	})
	t.Run("bodies", func(t *testing.T) {
		const mp = 1 << 20 // nats-server's default max_payload
		sizes := []int64{0, 1, mp - 1, mp, mp + 1, 10 << 20, 100 << 20}
		for _, n := range sizes {
			// upload
			h := sha256.New()
			req, _ := http.NewRequest("POST", nt.url(nt.edge, "/up"), io.TeeReader(io.LimitReader(&echo.Filler{}, n), h))
			req.ContentLength = n
			req.Header.Set("X-Tenant", "acme")
			req.Header.Set("X-App", "orders")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var rep echo.Report
			_ = json.Unmarshal(body, &rep)
			if resp.StatusCode != 200 || rep.BodyLength != n || rep.BodySHA256 != hex.EncodeToString(h.Sum(nil)) {
				t.Fatalf("upload %d: status %d, got %d bytes", n, resp.StatusCode, rep.BodyLength)
			}
			// download
			req, _ = http.NewRequest("GET", nt.url(nt.edge, "/down"), nil)
			req.Header.Set("X-Tenant", "acme")
			req.Header.Set("X-App", "orders")
			req.Header.Set("Echo-Body-Bytes", strconv.FormatInt(n, 10))
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			h.Reset()
			got, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			want := sha256.New()
			_, _ = io.CopyN(want, &echo.Filler{}, n)
			if err != nil || got != n || !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(want.Sum(nil))) {
				t.Fatalf("download %d: got %d bytes, %v", n, got, err)
			}
		}
	})
	t.Run("server-sent events", func(t *testing.T) {
		req, _ := http.NewRequest("GET", nt.url(nt.edge, "/events"), nil)
		req.Header.Set("X-Tenant", "acme")
		req.Header.Set("X-App", "orders")
		req.Header.Set("Echo-Events", "3")
		req.Header.Set("Echo-Interval", "200ms")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		natstest.EventGaps(t, resp.Body, 3, 200*time.Millisecond)
	})
	t.Run("injection", func(t *testing.T) {
		for _, bad := range []string{"a.b", "*", ">", "a b", "é", ""} {
			if code, _ := nt.get("/i", map[string]string{"X-Tenant": bad}); code != 400 {
				t.Fatalf("tenant %q: %d, want 400", bad, code)
			}
		}
	})
}

func TestNATSBinaryFailoverAndReloads(t *testing.T) {
	nt := startNATSTopo(t)
	if _, rep := nt.get("/z", nil); rep.NeoHeaders["Neo-Zone"][0] != "az-a" {
		t.Fatalf("%+v", rep)
	}
	nt.reload("az-b")
	if code, rep := nt.get("/z", nil); code != 200 || rep.NeoHeaders["Neo-Zone"][0] != "az-b" {
		t.Fatalf("az-a stopped: %d %+v", code, rep)
	}
	nt.reload()
	start := time.Now()
	if code, _ := nt.get("/z", nil); code != 503 || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("no gateway: %d after %v, want 503 within 100ms", code, time.Since(start))
	}
	for i := 0; i < 20; i++ {
		if i%2 == 0 {
			nt.reload("az-a", "az-b")
		} else {
			nt.reload("az-b", "az-a")
		}
	}
	if code, _ := nt.get("/z", nil); code != 200 {
		t.Fatal(code)
	}
	if n := nt.srv.NumClients(); n != 1 {
		t.Fatalf("after 20 reloads the nats-server has %d clients, want 1", n)
	}
	// two at start (a credential check, then the connection), none since
	if vz, _ := nt.srv.Varz(nil); vz.TotalConnections != 2 {
		t.Fatalf("the nats-server saw %d connections in all, want 2: one credential check and the connection, none per reload", vz.TotalConnections)
	}
}

// edgeOnlyCaddyfile is an edge that sends over NATS, alone in its process.
const edgeOnlyCaddyfile = `{
	admin 127.0.0.1:%[1]d
	neo_nats {
		connection default {
			servers nats://127.0.0.1:%[3]d
		}
	}
}

http://:%[2]d {
	bind 127.0.0.1
	header X-Edge-Generation %[4]d
	reverse_proxy nats {
		transport neo_nats {
			subject neo.rt.prod.{neo.zone}.{http.request.header.X-Tenant}.{http.request.header.X-App}
			zones az-a az-b
			response_header_timeout 2s
			chunk_timeout 2s
		}
	}
}
`

// TestNATSBinaryEdgeReloadMidStream reloads an edge process while responses
// stream through it from gateways in another process, as in production. Caddy
// cleans up the old configuration without waiting for its requests: the old
// transport must carry their responses on to the end.
func TestNATSBinaryEdgeReloadMidStream(t *testing.T) {
	nt := startNATSTopo(t)
	ports, err := harness.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	admin, edge := ports[0], ports[1]
	cfg := func(gen int) string { return fmt.Sprintf(edgeOnlyCaddyfile, admin, edge, nt.natsPort, gen) }
	inst := harness.Start(t, harness.Options{
		Config:  cfg(1),
		Adapter: "caddyfile",
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", edge)},
	})
	get := func(path string, hdr ...string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", nt.url(edge, path), nil)
		req.Header.Set("X-Tenant", "acme")
		req.Header.Set("X-App", "orders")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return http.DefaultClient.Do(req)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := get("/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge never served over NATS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	const n = 4
	results, started := natstest.StartStreams(n, 6, func() (*http.Response, error) {
		return get("/events", "Echo-Events", "6", "Echo-Interval", "100ms")
	})
	<-started // every stream under way
	js, err := adapttest.Adapt(t, "Caddyfile", []byte(cfg(2)))
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := inst.Admin("POST", "/load", js); err != nil || code != 200 {
		t.Fatalf("reload: %d %s %v", code, body, err)
	}
	for i := 0; i < n; i++ {
		if r := <-results; r != "" {
			t.Fatalf("a response streaming through the edge was cut by its reload: %s", r)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	resp, err := get("/after")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Edge-Generation") != "2" {
		t.Fatalf("after the reload: %d, generation %q", resp.StatusCode, resp.Header.Get("X-Edge-Generation"))
	}
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

func (nt *natsTopo) goroutines() int {
	_, body, err := nt.inst.Admin("GET", "/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		nt.t.Fatal(err)
	}
	m := goroutineTotal.FindSubmatch(body)
	if m == nil {
		nt.t.Fatalf("no goroutine total in %q", body[:min(len(body), 200)])
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func TestNATSBinaryServerRestartUnderLoad(t *testing.T) {
	nt := startNATSTopo(t)
	client := &http.Client{Timeout: 10 * time.Second}
	// warm up at the same concurrency, so that pooled upstream connections
	// exist before the count
	var warm sync.WaitGroup
	for w := 0; w < 4; w++ {
		warm.Add(1)
		go func() {
			defer warm.Done()
			for i := 0; i < 50; i++ {
				req, _ := http.NewRequest("GET", nt.url(nt.edge, "/warm"), nil)
				req.Header.Set("X-Tenant", "acme")
				req.Header.Set("X-App", "orders")
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	warm.Wait()
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	before := nt.goroutines()
	traffic := natstest.StartLoad(4, 5000, func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", nt.url(nt.edge, "/load"), nil)
		req.Header.Set("X-Tenant", "acme")
		req.Header.Set("X-App", "orders")
		return client.Do(req)
	})
	time.Sleep(300 * time.Millisecond)
	nt.srv.Shutdown()
	nt.srv.WaitForShutdown()
	time.Sleep(time.Second)
	back := time.Now()
	nt.srv = startNATSServer(t, nt.natsPort)
	resumed, ok := traffic.WaitOKAfter(back, 2*time.Second)
	if !ok {
		traffic.Stop()
		t.Fatalf("service did not resume within 2s\n%s", tail(nt.inst.Logs(), 3000))
	}
	t.Logf("resumed %v after the nats-server returned", resumed)
	worst := traffic.Stop()
	// the transport's head timeout is 2s
	if worst > 3*time.Second {
		t.Fatalf("a request waited %v", worst)
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := nt.goroutines()
		if after <= before+3 {
			t.Logf("goroutines: %d before, %d after", before, after)
			break
		}
		if time.Now().After(deadline) {
			_, dump, _ := nt.inst.Admin("GET", "/debug/pprof/goroutine?debug=1", nil)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", before, after, dump)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestNATSMicroLs lists the gateways with natscli (`nats micro ls`) when the
// nats CLI is installed (go install github.com/nats-io/natscli/nats@v0.5.0).
func TestNATSMicroLs(t *testing.T) {
	cli, err := exec.LookPath("nats")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		cli = strings.TrimSpace(string(gopath)) + "/bin/nats"
		if _, err := os.Stat(cli); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("nats CLI not installed; .ci/run installs it")
			}
			t.Skip("nats CLI not installed (go install github.com/nats-io/natscli/nats@v0.5.0)")
		}
	}
	nt := startNATSTopo(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", nt.natsPort)
	out, err := exec.Command(cli, "--server", url, "micro", "ls").CombinedOutput()
	if err != nil {
		t.Fatalf("nats micro ls: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "neo_stage_gateway") || !strings.Contains(string(out), "zone az-a") || !strings.Contains(string(out), "zone az-b") {
		t.Fatalf("want neo_stage_gateway instances for az-a and az-b:\n%s", out)
	}
	t.Logf("%s", out)
	for range 3 {
		nt.get("/micro", nil)
	}
	out, err = exec.Command(cli, "--server", url, "micro", "stats", "neo_stage_gateway").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "http") {
		t.Fatalf("nats micro stats: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestPlatformCaddyfile runs caddyfiles/platform.Caddyfile against the stage
// gateways of a NATS topology: /<stage>/<tenant>/<app>/<path> reaches the app
// over NATS as the edge would send it (the stage's host, /<app>/<path>);
// anything else is 404 without touching NATS.
func TestPlatformCaddyfile(t *testing.T) {
	nt := startNATSTopo(t)
	admin, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, harness.Options{
		Config: "caddyfiles/platform.Caddyfile",
		Admin:  fmt.Sprintf("127.0.0.1:%d", admin),
		// a NATS server without authorization ignores the password, but
		// the role requires one
		Env: []string{fmt.Sprintf("NEO_NATS_URL=nats://127.0.0.1:%d", nt.natsPort), fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", admin),
			"NEO_NATS_PLATFORM_PASSWORD=platform-test-password"},
		WaitFor: []string{"127.0.0.1:9800"},
	})
	get := func(path string) (int, echo.Report) {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:9800"+path, nil)
		// a platform service cannot pass as a signed-in user or as acme
		req.Header.Set("Neo-User", "mallory")
		req.Header.Set("Neo-User-Roles", "admin")
		req.Header.Set("Neo-Realm", "prod")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var rep echo.Report
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatalf("%s: %q", path, body)
			}
		}
		return resp.StatusCode, rep
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, rep := get("/prod/acme/orders/api/items?x=1&y=%20")
		if code == 200 {
			if rep.Path != "/orders/api/items" || rep.Host != "acme.apps.localhost" || rep.RawQuery != "x=1&y=%20" || rep.NeoHeaders["Neo-Tenant"][0] != "acme" ||
				rep.NeoHeaders["Neo-App"][0] != "orders" || rep.NeoHeaders["Neo-Stage"][0] != "prod" || rep.NeoHeaders["Neo-Caller"][0] != "platform" {
				t.Fatalf("%+v", rep)
			}
			for k := range rep.NeoHeaders {
				if strings.HasPrefix(k, "Neo-User") || k == "Neo-Realm" {
					t.Fatalf("a platform service's %s reached the app: %v", k, rep.NeoHeaders)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("platform listener never reached the gateway: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, rep := get("/prod/globex/shop"); code != 200 || rep.Path != "/shop" || rep.Host != "globex.apps.localhost" {
		t.Fatalf("app root: %d %+v", code, rep)
	}
	for _, bad := range []string{"/prod/acme", "/PROD/acme/orders/x", "/prod/ac.me/orders/x", "/prod/acme/or%2Eders/x", "/",
		"/prod/nobody/orders/x", "/qa/acme/orders/x"} { // a tenant or stage the registry does not have: 404 (neo_stage_host)
		if code, _ := get(bad); code != 404 {
			t.Fatalf("%s: %d, want 404", bad, code)
		}
	}
	// a stage with no gateway: 503 at once
	if code, _ := get("/dev/acme/orders/x"); code != 503 {
		t.Fatalf("stage without gateway: %d, want 503", code)
	}
}

// TestRoleCaddyfilesProductionNATS runs caddyfiles/stage.Caddyfile and
// caddyfiles/platform.Caddyfile, unchanged, against a nats-server with
// caddyfiles/nats/nats-server.conf: each connects as its own user (gw-prod,
// platform) and a platform request reaches an app replica of stage prod
// through the gateway. With the gateway's password wrong, the gateway's
// config is refused at load (naming the field) and the platform's request
// finds no responder (503 at once).
func TestRoleCaddyfilesProductionNATS(t *testing.T) {
	for _, u := range []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"} {
		t.Setenv("NEO_NATS_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))+"_PASSWORD", "pw-"+u)
	}
	opts, err := server.ProcessConfigFile(harness.RepoRoot() + "/caddyfiles/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", ports[0]
	ns := startNATSServerOpts(t, opts)
	t.Cleanup(ns.Shutdown)
	natsURL := fmt.Sprintf("NEO_NATS_URL=nats://127.0.0.1:%d", ports[0])

	// the app replicas of acme/orders in stage prod, zone az-a
	for _, addr := range []string{"127.0.0.1:9121", "127.0.0.1:9122"} {
		srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Replica-Tenant", r.Header.Get("Neo-Tenant"))
			fmt.Fprintf(w, "%s %s", r.Header.Get("Neo-Stage"), r.URL.Path)
		})}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
	}

	startGateway := func(password string) *harness.Instance {
		admin, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return harness.Start(t, harness.Options{
			Config: "caddyfiles/stage.Caddyfile",
			Admin:  fmt.Sprintf("127.0.0.1:%d", admin),
			Env: []string{natsURL, "NEO_STAGE=prod", "NEO_ZONE=az-a", "NEO_NATS_GW_PASSWORD=" + password,
				fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", admin), "NEO_STORE_DIR=" + t.TempDir()},
			WaitFor: []string{"127.0.0.1:9701"},
		})
	}
	gw := startGateway("pw-gw-prod")
	harness.Start(t, harness.Options{
		Config:  "caddyfiles/platform.Caddyfile",
		Admin:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		Env:     []string{natsURL, "NEO_NATS_PLATFORM_PASSWORD=pw-platform", fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", ports[1])},
		WaitFor: []string{"127.0.0.1:9800"},
	})
	get := func() (int, string, http.Header) {
		resp, err := http.Get("http://127.0.0.1:9800/prod/acme/orders/items")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, h := get()
		if code == 200 {
			if body != "prod /orders/items" || h.Get("Replica-Tenant") != "acme" {
				t.Fatalf("replica got %q (tenant %q)", body, h.Get("Replica-Tenant"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("platform request never reached the replica: %d %q\ngateway:\n%s", code, body, gw.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A request published on acme's subject with another tenant's host (as a
	// platform service could before the listener set the host itself): the
	// gateway's neo_route refuses it (404), it never reaches globex.
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), nats.UserInfo("platform", "pw-platform"), nats.CustomInboxPrefix("_PLATFORM"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	head := nats.Header{"Neo-Nats-Kind": {"head"}, "Neo-Nats-Version": {"1"}, "Neo-Nats-Method": {"GET"}, "Neo-Nats-Path": {"/billing/x"},
		"Neo-Nats-Host": {"globex.apps.localhost"}, "Neo-Nats-Window": {"8"}, "Neo-Nats-Length": {"0"}, "Neo-Nats-Eof": {"1"}}
	resp, err := nc.RequestMsg(&nats.Msg{Subject: "neo.rt.prod.az-a.acme.orders", Header: head}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.Header.Get("Neo-Nats-Status"); st != "404" {
		t.Fatalf("acme's subject with globex's host: status %q, want 404\n%s", st, gw.Logs())
	}
	if !strings.Contains(gw.Logs(), `"reason":"subject_mismatch"`) || !strings.Contains(gw.Logs(), `"tenant":"acme"`) {
		t.Errorf("no warning naming the subject's tenant and the reason:\n%s", gw.Logs())
	}

	// the gateway with a wrong password: the config is refused at load,
	// naming the field, and nobody answers the platform (503 at once)
	gw.Stop()
	admin, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	bad, err := harness.StartProcess(harness.Options{
		Config: "caddyfiles/stage.Caddyfile",
		Admin:  fmt.Sprintf("127.0.0.1:%d", admin),
		Env: []string{natsURL, "NEO_STAGE=prod", "NEO_ZONE=az-a", "NEO_NATS_GW_PASSWORD=wrong",
			fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", admin), "NEO_STORE_DIR=" + t.TempDir()},
		WaitFor: []string{"127.0.0.1:9701"},
	})
	if err == nil {
		bad.Stop()
		t.Fatal("a gateway with a wrong password started")
	}
	if !strings.Contains(err.Error(), "user: the server refused the credentials") || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Errorf("start error does not name the field and the reason: %v", err)
	}
	start := time.Now()
	if code, body, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("no gateway: %d %q, want 503", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("503 after %v", d)
	}
}
