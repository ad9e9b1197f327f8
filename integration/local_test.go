package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/modules/echo"
)

// startLocal starts caddyfiles/local.Caddyfile exactly as the README's run
// command does: from the repository root, with that file as the config.
func startLocal(t *testing.T, env ...string) (*harness.Instance, *http.Client) {
	t.Helper()
	inst := harness.Start(t, harness.Options{
		Config:  "caddyfiles/local.Caddyfile",
		Env:     env,
		WaitFor: []string{"127.0.0.1:8443", "127.0.0.1:8080", "127.0.0.1:9111", "127.0.0.1:9512"},
	})
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	c := harness.Client("127.0.0.1:8443", roots)
	// Certificates are issued in the background at start; wait for each name.
	for _, host := range []string{"acme-dev.apps.localhost", "acme.apps.localhost", "shop.acme.localhost",
		"globex-dev.apps.localhost", "globex.apps.localhost", "acme.platform.localhost", "globex.platform.localhost"} {
		if err := harness.WaitServing(c, "https://"+host+":8443/", 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return inst, c
}

// localTokens caches the local topology's access tokens per client and host.
var localTokens sync.Map // "<client pointer> <host>" -> token

// localToken signs in on host as the local topology's demo user of its
// tenant (alice for acme, bob for globex; caddyfiles/local/identity.caddy)
// and returns the access token: routing tests use it to reach private
// apps and platform APIs (identity has its own tests).
func localToken(t *testing.T, c *http.Client, host string) string {
	t.Helper()
	key := fmt.Sprintf("%p %s", c, host)
	if v, ok := localTokens.Load(key); ok {
		return v.(string)
	}
	user := "alice"
	if strings.HasPrefix(host, "globex") {
		user = "bob"
	}
	jar, _ := cookiejar.New(nil)
	bc := *c
	bc.Jar = jar
	token := signInForm(t, &bc, "https://"+host+":8443", host, user, "neo-demo-password")
	localTokens.Store(key, token)
	return token
}

// signInForm signs in as user on the edge at base through the sign-in form
// (c keeps the CSRF cookie: it needs a jar) and returns the access token.
func signInForm(t *testing.T, c *http.Client, base, host, user, password string) string {
	t.Helper()
	resp, err := c.Get(base + "/identity/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("sign-in page of %s: %d %.300q", host, resp.StatusCode, page)
	}
	resp, err = c.PostForm(base+"/identity/login", url.Values{"username": {user}, "password": {password}, "csrf": {string(m[1])}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-neo_at" {
			return ck.Value
		}
	}
	t.Fatalf("signing in as %s on %s: %d, no access token", user, host, resp.StatusCode)
	return ""
}

// getReport GETs url with a token of the host's demo user (unless hdr sets
// Authorization) and decodes the echo replica's report of a 200.
func getReport(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, echo.Report) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+localToken(t, c, req.URL.Hostname()))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep echo.Report
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatalf("GET %s: %v in %q", url, err, body)
		}
	}
	return resp, rep
}

func TestLocalTopologyServesDemoTenants(t *testing.T) {
	_, c := startLocal(t)
	for _, tc := range []struct {
		url                         string
		tenant, stage, app, service string
	}{
		{"https://acme-dev.apps.localhost:8443/orders/x", "acme", "dev", "orders", ""},
		{"https://acme.apps.localhost:8443/orders/x", "acme", "prod", "orders", ""},
		{"https://acme-dev.apps.localhost:8443/ledger/", "acme", "dev", "ledger", ""},
		{"https://globex-dev.apps.localhost:8443/billing/", "globex", "dev", "billing", ""},
		{"https://globex.apps.localhost:8443/shop/", "globex", "prod", "shop", ""},
		{"https://shop.acme.localhost:8443/orders/", "acme", "prod", "orders", ""},
		{"https://acme.platform.localhost:8443/api/build/x", "", "", "", "build"},
		{"https://globex.platform.localhost:8443/api/deploy/x", "", "", "", "deploy"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			resp, rep := getReport(t, c, tc.url)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if rep.Tenant != tc.tenant || rep.Stage != tc.stage || rep.App != tc.app || rep.Service != tc.service {
				t.Fatalf("served by %+v", rep)
			}
		})
	}
}

func TestLocalTopologyRoundRobinsReplicas(t *testing.T) {
	_, c := startLocal(t)
	seen := map[string]int{}
	for range 30 {
		_, rep := getReport(t, c, "https://acme-dev.apps.localhost:8443/orders/")
		seen[rep.Replica]++
	}
	if len(seen) < 2 {
		t.Fatalf("requests reached only %v", seen)
	}
}

func TestLocalTopologyRedirectsHTTP(t *testing.T) {
	startLocal(t)
	c := harness.Client("127.0.0.1:8080", nil)
	resp, err := c.Get("http://acme-dev.apps.localhost:8080/orders/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://acme-dev.apps.localhost:8443/orders/"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("got %d Location %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestLocalTopologyEchoReplicasDirect(t *testing.T) {
	startLocal(t)
	for port, want := range map[int]string{9111: "acme-orders-dev-1", 9423: "globex-shop-prod-3", 9502: "build-2"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		var rep echo.Report
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if rep.Replica != want {
			t.Fatalf("port %d answered as %q", port, rep.Replica)
		}
	}
}

// TestLocalRuntimeOverNATS: runtime requests travel edge → embedded NATS →
// the stage gateway of their stage and zone → replicas; platform requests go
// straight to the service replicas. The gateways' request counters show it.
func TestLocalRuntimeOverNATS(t *testing.T) {
	inst, c := startLocal(t)
	gatewayRequests := func() string {
		status, body, err := inst.Admin("GET", "/metrics", nil)
		if err != nil || status != 200 {
			t.Fatalf("metrics: %d %v", status, err)
		}
		return grepLines(string(body), "caddy_neo_nats")
	}
	for range 3 {
		if resp, rep := getReport(t, c, "https://acme.apps.localhost:8443/orders/n"); resp.StatusCode != 200 || rep.Stage != "prod" {
			t.Fatalf("runtime: %d %+v", resp.StatusCode, rep)
		}
		if resp, rep := getReport(t, c, "https://globex-dev.apps.localhost:8443/shop/n"); resp.StatusCode != 200 || rep.Tenant != "globex" {
			t.Fatalf("runtime: %d %+v", resp.StatusCode, rep)
		}
	}
	m := gatewayRequests()
	if !strings.Contains(m, `caddy_neo_nats_gateway_requests_total{gateway="prod-az-a"`) || !strings.Contains(m, `caddy_neo_nats_gateway_requests_total{gateway="dev-az-a"`) {
		t.Fatalf("the stage gateways served no runtime request:\n%s", m)
	}
	t.Logf("gateway metrics after runtime requests:\n%s", grepLines(m, "gateway_requests"))
	before := m
	if resp, rep := getReport(t, c, "https://acme.platform.localhost:8443/api/build/x"); resp.StatusCode != 200 || rep.Service != "build" {
		t.Fatalf("platform: %d %+v", resp.StatusCode, rep)
	}
	if after := gatewayRequests(); after != before {
		t.Fatalf("a platform request went through a stage gateway:\n%s\n%s", before, after)
	}
}

// TestLocalTopologyOperatorView: the local topology's start prints where to
// go next and no HTTP/2 or HTTP/3 warnings for its plain-HTTP listeners;
// each request through the edge is one access line (tenant, stage, app,
// zone, replica, status, duration, bytes) and is counted once in the
// per-tenant metrics, though it also passes the stage server.
func TestLocalTopologyOperatorView(t *testing.T) {
	inst, c := startLocal(t)
	logs := inst.Logs()
	if !strings.Contains(logs, "try https://acme-dev.apps.localhost:8443/orders/") {
		t.Fatal("the start does not say where to go next")
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "HTTP/2 skipped") || strings.Contains(l, "HTTP/3 skipped") {
			t.Fatalf("a protocol warning at start: %s", l)
		}
	}
	metric := func() float64 {
		t.Helper()
		_, body, err := inst.Admin("GET", "/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "caddy_neo_requests_total{") && strings.Contains(l, `app="orders"`) &&
				strings.Contains(l, `code_class="2xx"`) && strings.Contains(l, `stage="dev"`) && strings.Contains(l, `tenant="acme"`) {
				var v float64
				fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v)
				return v
			}
		}
		return 0
	}
	before := metric()
	const n = 20
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("https://acme-dev.apps.localhost:8443/orders/operator-view-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := metric() - before; got != n {
		t.Fatalf("caddy_neo_requests_total{acme,dev,orders,2xx} grew by %v for %d requests", got, n)
	}
	type line struct {
		Logger, Tenant, Stage, App, Zone, Replica string
		Status, Size                              int
		Duration                                  float64
		Request                                   struct{ URI string }
	}
	var lines []line
	for deadline := time.Now().Add(10 * time.Second); ; {
		lines = nil
		for _, l := range strings.Split(inst.Logs(), "\n") {
			var a line
			if json.Unmarshal([]byte(l), &a) == nil && strings.HasPrefix(a.Logger, "http.log.access") && strings.Contains(a.Request.URI, "/orders/operator-view-") {
				lines = append(lines, a)
			}
		}
		if len(lines) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lines) != n {
		t.Fatalf("%d access lines for %d requests", len(lines), n)
	}
	for _, a := range lines {
		if a.Tenant != "acme" || a.Stage != "dev" || a.App != "orders" || a.Zone == "" || a.Replica == "" || a.Status != 200 || a.Size == 0 || a.Duration <= 0 {
			t.Fatalf("access line lacks a field: %+v", a)
		}
	}
}

// TestLocalTopologyLimitedRequestsLogged: requests a rate limit stopped
// (the per-host limit of globex's tier, lowered to 30 a minute) have their access line
// with the tenant and stage and status 429, and are counted in the
// tenant's 4xx series.
func TestLocalTopologyLimitedRequestsLogged(t *testing.T) {
	inst, c := startLocal(t, "NEO_RL_HOST_LARGE_EVENTS=30")
	const series = `caddy_neo_requests_total{app="",code_class="4xx",stage="prod",tenant="globex"}`
	counted := func() float64 {
		_, body, _ := inst.Admin("GET", "/metrics", nil)
		for _, l := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(l, series+" "); ok {
				var f float64
				fmt.Sscan(v, &f)
				return f
			}
		}
		return 0
	}
	before := counted()
	limited := 0
	for i := range 40 {
		resp, err := c.Get(fmt.Sprintf("https://globex.apps.localhost:8443/shop/limited-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("no request was limited")
	}
	type line struct {
		Logger, Tenant, Stage string
		Status                int
		Request               struct{ URI string }
	}
	var logged int
	for deadline := time.Now().Add(10 * time.Second); ; {
		logged = 0
		for _, l := range strings.Split(inst.Logs(), "\n") {
			var a line
			if json.Unmarshal([]byte(l), &a) == nil && strings.HasPrefix(a.Logger, "http.log.access") &&
				strings.Contains(a.Request.URI, "/shop/limited-") && a.Status == http.StatusTooManyRequests {
				if a.Tenant != "globex" || a.Stage != "prod" {
					t.Fatalf("access line of a limited request: %s", l)
				}
				logged++
			}
		}
		if logged >= limited || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if logged != limited {
		t.Fatalf("%d access lines for %d limited requests", logged, limited)
	}
	if got := counted() - before; got != float64(limited) {
		t.Fatalf("%s grew by %v for %d limited requests", series, got, limited)
	}
}
