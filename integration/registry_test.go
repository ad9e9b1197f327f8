package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// rawTLS sends a raw HTTP/1.1 request over TLS with the given SNI to the
// local topology and returns the response.
func rawTLS(t *testing.T, roots *x509.CertPool, sni, request string) *http.Response {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:8443", &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", sni, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", request, err)
	}
	return resp
}

func neoTenant(t *testing.T, resp *http.Response) (status int, tenant, app, replica string) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, "", "", ""
	}
	var rep struct {
		Replica    string              `json:"replica"`
		App        string              `json:"app"`
		Tenant     string              `json:"tenant"`
		NeoHeaders map[string][]string `json:"neo_headers"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	if got := rep.NeoHeaders["Neo-Tenant"]; len(got) != 1 || got[0] != rep.Tenant {
		t.Fatalf("replica of %s got Neo-Tenant %v", rep.Tenant, got)
	}
	return 200, rep.Tenant, rep.App, rep.Replica
}

func TestRegistryLocalResolutions(t *testing.T) {
	_, c := startLocal(t)
	for _, tc := range []struct {
		url, tenant, stage, app string
	}{
		{"https://acme-dev.apps.localhost:8443/orders/x", "acme", "dev", "orders"},
		{"https://acme.apps.localhost:8443/orders/x", "acme", "prod", "orders"},
	} {
		resp, rep := getReport(t, c, tc.url)
		if resp.StatusCode != 200 || rep.Tenant != tc.tenant || rep.Stage != tc.stage || rep.App != tc.app {
			t.Fatalf("%s: %d %+v", tc.url, resp.StatusCode, rep)
		}
		if h := rep.NeoHeaders; h["Neo-Tenant"][0] != tc.tenant || h["Neo-Stage"][0] != tc.stage || h["Neo-App"][0] != tc.app {
			t.Fatalf("%s: Neo headers %v", tc.url, h)
		}
	}
	// Custom domain: / redirects to the default app (301), served by acme prod orders.
	resp, _ := getReport(t, c, "https://shop.acme.localhost:8443/")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/orders/" {
		t.Fatalf("shop.acme.localhost/: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, rep := getReport(t, c, "https://shop.acme.localhost:8443/orders/")
	if resp.StatusCode != 200 || rep.Tenant != "acme" || rep.Stage != "prod" || rep.App != "orders" {
		t.Fatalf("shop.acme.localhost/orders/: %d %+v", resp.StatusCode, rep)
	}
	// Platform: the build service, told the tenant.
	resp, rep = getReport(t, c, "https://acme.platform.localhost:8443/api/build/x")
	if resp.StatusCode != 200 || rep.Service != "build" || rep.NeoHeaders["Neo-Tenant"][0] != "acme" || rep.NeoHeaders["Neo-Service"][0] != "build" {
		t.Fatalf("platform: %d %+v", resp.StatusCode, rep)
	}
	// The generic 404: another tenant's app, an unknown app, an unknown
	// tenant (Host differs from SNI: the unknown name gets no certificate),
	// an unknown service: the same status, headers and body.
	type answer struct {
		status int
		hdr    http.Header
		body   string
	}
	roots := c.Transport.(*http.Transport).TLSClientConfig.RootCAs
	// Over the whole edge, a Host other than the TLS server name gets 421
	// (strict_sni_host) before routing, whether that host's tenant exists or
	// not; an unknown tenant's own name is refused at the TLS handshake
	// (TestRegistryAdminRuntimeTenant). Each kind of refusal is byte-identical.
	first := map[int]*answer{}
	for _, tc := range []struct {
		sni, host, path string
		want            int
	}{
		{"acme-dev.apps.localhost", "acme-dev.apps.localhost:8443", "/billing/", 404},
		{"acme-dev.apps.localhost", "acme-dev.apps.localhost:8443", "/nope/", 404},
		{"acme.platform.localhost", "acme.platform.localhost:8443", "/api/nope/", 404},
		{"acme-dev.apps.localhost", "nobody-dev.apps.localhost:8443", "/orders/", 421},
		{"acme-dev.apps.localhost", "nobody.apps.localhost:8443", "/orders/", 421},
		{"acme-dev.apps.localhost", "globex-dev.apps.localhost:8443", "/billing/", 421},
	} {
		resp := rawTLS(t, roots, tc.sni, "GET "+tc.path+" HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Del("Date")
		a := answer{resp.StatusCode, resp.Header, string(body)}
		if a.status != tc.want {
			t.Fatalf("%v: status %d", tc, a.status)
		}
		if first[a.status] == nil {
			first[a.status] = &a
			continue
		}
		if fmt.Sprint(a) != fmt.Sprint(*first[a.status]) {
			t.Fatalf("%v: %d differs:\n%v\n%v", tc, a.status, a, *first[a.status])
		}
	}
}

// TestRegistrySpoofing runs the isolation table against the running binary.
func TestRegistrySpoofing(t *testing.T) {
	inst, c := startLocal(t)
	roots, _ := inst.RootPool("local")
	bearer := "Bearer " + localToken(t, c, "acme-dev.apps.localhost")
	req := func(method, target, host string, hdr ...string) string {
		s := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: " + bearer + "\r\n"
		for i := 0; i+1 < len(hdr); i += 2 {
			s += hdr[i] + ": " + hdr[i+1] + "\r\n"
		}
		return s + "Connection: close\r\n\r\n"
	}
	const acme = "acme-dev.apps.localhost"
	for _, tc := range []struct {
		name, sni, request string
		status             int
		tenant, app        string
	}{
		{"Neo-Tenant spoof", acme, req("GET", "/orders/", acme, "Neo-Tenant", "globex", "neo_tenant", "globex", "NEO-APP", "billing"), 200, "acme", "orders"},
		{"X-Forwarded-Host", acme, req("GET", "/orders/", acme, "X-Forwarded-Host", "globex-dev.apps.localhost"), 200, "acme", "orders"},
		{"X-Forwarded-Host other app", acme, req("GET", "/billing/", acme, "X-Forwarded-Host", "globex-dev.apps.localhost"), 404, "", ""},
		{"absolute-form target", acme, req("GET", "https://globex-dev.apps.localhost:8443/billing/", acme), 400, "", ""},
		{"dot dot", acme, req("GET", "/orders/../billing", acme), 404, "", ""},
		{"dot dot own app", acme, req("GET", "/orders/../ledger/", acme), 403, "", ""}, // the WAF refuses traversal (neo_route alone: 200 acme/ledger, see modules/neo)
		{"%2e%2e", acme, req("GET", "/orders/%2e%2e/billing", acme), 400, "", ""},
		{"%2E%2E", acme, req("GET", "/orders/%2E%2E/ledger", acme), 400, "", ""},
		{"%2f", acme, req("GET", "/orders%2f..%2fbilling", acme), 400, "", ""},
		{"double slash", acme, req("GET", "//billing/", acme), 404, "", ""},
		{"double slash own", acme, req("GET", "//orders//x", acme), 200, "acme", "orders"},
		{"backslash", acme, req("GET", "/orders\\..\\billing", acme), 400, "", ""},
		{"%5c", acme, req("GET", "/orders%5c..%5cbilling", acme), 400, "", ""},
		{"host with port", acme, req("GET", "/orders/", "acme-dev.apps.localhost:8443"), 200, "acme", "orders"},
		{"host upper case", acme, req("GET", "/orders/", "ACME-DEV.APPS.LOCALHOST:8443"), 200, "acme", "orders"},
		// Host with a trailing dot over SNI without one: the edge's Host/SNI
		// check (strict_sni_host) refuses it with 421 (neo_route alone
		// normalises it to acme; see modules/neo).
		{"host trailing dot", acme, req("GET", "/orders/", "acme-dev.apps.localhost.:8443"), 421, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, tenant, app, _ := neoTenant(t, rawTLS(t, roots, tc.sni, tc.request))
			// The local topology runs the whole edge: the WAF (403) and the
			// Host/SNI check (421) may refuse a request before routing does.
			// Any refusal is a pass for a refusal case; never a 200.
			if tc.status != 200 && (status == 403 || status == 421) && tenant == "" {
				return
			}
			if status != tc.status || tenant != tc.tenant || app != tc.app {
				t.Fatalf("got %d %s/%s, want %d %s/%s", status, tenant, app, tc.status, tc.tenant, tc.app)
			}
		})
	}
	t.Run("HTTP/2 :authority", func(t *testing.T) {
		// Another tenant's :authority over acme's connection: 421 (Host/SNI check).
		for authority, want := range map[string]int{"ACME-DEV.apps.localhost:8443": 200, "globex-dev.apps.localhost": 421} {
			r, _ := http.NewRequest("GET", "https://acme-dev.apps.localhost:8443/orders/", nil)
			r.Host = authority
			r.Header.Set("Neo-Tenant", "globex")
			resp, err := c.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 {
				t.Fatalf("not HTTP/2: %s", resp.Proto)
			}
			// globex-dev has no app orders: the :authority decides, and it never reaches acme.
			status, tenant, _, _ := neoTenant(t, resp)
			if status != want || (want == 200 && tenant != "acme") {
				t.Fatalf(":authority %s: %d %s", authority, status, tenant)
			}
		}
		r, _ := http.NewRequest("GET", "https://acme-dev.apps.localhost:8443/billing/", nil)
		r.Host = "globex-dev.apps.localhost"
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		// The edge refuses domain fronting (Host/:authority other than the
		// TLS server name) with 421: neither tenant's replica is reached.
		if status, tenant, _, _ := neoTenant(t, resp); status != 421 || tenant != "" {
			t.Fatalf(":authority globex-dev over acme's connection: %d %s, want 421", status, tenant)
		}
	})
}

// replica starts an HTTP server answering with the Neo-* headers it got.
func replica(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"replica": name, "tenant": r.Header.Get("Neo-Tenant"), "app": r.Header.Get("Neo-App"),
			"neo_headers": map[string][]string{"Neo-Tenant": r.Header.Values("Neo-Tenant")}, "path": r.URL.Path,
		})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestRegistryAdminRuntimeTenant(t *testing.T) {
	home := t.TempDir()
	start := func() (*harness.Instance, *x509.CertPool) {
		inst := harness.Start(t, harness.Options{
			Config: "caddyfiles/local.Caddyfile", Home: home,
			WaitFor: []string{"127.0.0.1:8443", "127.0.0.1:8080", "127.0.0.1:9111"},
		})
		roots, err := inst.RootPool("local")
		if err != nil {
			t.Fatal(err)
		}
		return inst, roots
	}
	inst, roots := start()
	addr := replica(t, "initech-crm-1")

	// Bad payloads change nothing and name the field.
	for body, want := range map[string]string{
		`{"apps":{"crm":{"stages":{"qa":{}}}}}`:                                                                                               "tenants.initech.apps.crm.stages.qa",
		`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"nope"}]}}}}}`:                                                              "tenants.initech.apps.crm.stages.prod.replicas[0].address",
		`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"127.0.0.1:1"}]}}}}}`:                                                       "tenants.initech.apps.crm.stages.prod.replicas[0].zone: missing",
		`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"127.0.0.1:1","zone":"az-bb"}]}}}}}`:                                        "tenants.initech.apps.crm.stages.prod.replicas[0].zone: unknown zone",
		`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"127.0.0.1:1","zone":"az-a"},{"address":"127.0.0.1:1","zone":"az-b"}]}}}}}`: "tenants.initech.apps.crm.stages.prod.replicas[1].address",
		`{"apps":{"Crm":{}}}`: "tenants.initech.apps.Crm",
		`{"colour":"blue"}`:   "colour: unknown field",
		`{"apps":[1]}`:        "apps: expected",
		`{"apps":{}}{"x":1}`:  "trailing data",
	} {
		st, out, err := inst.Admin("PUT", "/neo/tenants/initech", body)
		if err != nil || st != 400 || !strings.Contains(string(out), want) {
			t.Fatalf("PUT %s: %d %s %v (want 400 naming %q)", body, st, out, err, want)
		}
	}
	for path, want := range map[string]int{"/neo/tenants/initech": 404, "/neo/tenants/initech/apps/crm": 404, "/neo/nope": 404, "/neo/tenants/acme/apps/nope": 404} {
		if st, out, _ := inst.Admin("GET", path, nil); st != want {
			t.Fatalf("GET %s: %d %s", path, st, out)
		}
	}
	if st, out, _ := inst.Admin("DELETE", "/neo/tenants/acme", nil); st != 409 {
		t.Fatalf("DELETE config tenant: %d %s", st, out)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/acme-dev", `{}`); st != 400 || !strings.Contains(string(out), "ambiguous") {
		t.Fatalf("ambiguous tenant: %d %s", st, out)
	}

	// Create initech with app crm in prod.
	tenant := fmt.Sprintf(`{"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":%q,"zone":"az-a"}]}}}}}`, addr)
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant); st != 201 {
		t.Fatalf("PUT initech: %d %s", st, out)
	}
	check := func(c *http.Client) {
		t.Helper()
		resp, err := c.Get("https://initech.apps.localhost:8443/crm/x")
		if err != nil {
			t.Fatalf("initech: %v", err)
		}
		if resp.TLS == nil || resp.TLS.PeerCertificates[0].DNSNames[0] != "initech.apps.localhost" {
			t.Fatalf("certificate %v", resp.TLS.PeerCertificates[0].DNSNames)
		}
		if status, tn, app, rep := neoTenant(t, resp); status != 200 || tn != "initech" || app != "crm" || rep != "initech-crm-1" {
			t.Fatalf("initech: %d %s %s %s", status, tn, app, rep)
		}
	}
	c := harness.Client("127.0.0.1:8443", roots)
	check(c)
	// Sub-resources: add a dev deployment, read it back.
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech/apps/crm/stages/dev/replicas", fmt.Sprintf(`[{"address":%q,"zone":"az-a"}]`, addr)); st != 201 {
		t.Fatalf("PUT replicas: %d %s", st, out)
	}
	if st, out, _ := inst.Admin("GET", "/neo/tenants/initech/apps/crm/stages/dev/replicas", nil); st != 200 || !strings.Contains(string(out), addr) {
		t.Fatalf("GET replicas: %d %s", st, out)
	}
	resp, err := c.Get("https://initech-dev.apps.localhost:8443/crm/")
	if err != nil {
		t.Fatal(err)
	}
	if status, tn, _, _ := neoTenant(t, resp); status != 200 || tn != "initech" {
		t.Fatalf("initech-dev: %d %s", status, tn)
	}

	// Metrics: requests by tenant, stage and app; registry size; admin changes.
	if resp, err := c.Get("https://initech.apps.localhost:8443/nope/"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown app: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if st, out, _ := inst.Admin("GET", "/metrics", nil); st != 200 ||
		!strings.Contains(string(out), `caddy_neo_requests_total{app="crm",code_class="2xx",stage="prod",tenant="initech"}`) ||
		!strings.Contains(string(out), "caddy_neo_registry_tenants 3") ||
		!strings.Contains(string(out), `caddy_neo_admin_changes_total{code="201",method="PUT"}`) ||
		!strings.Contains(string(out), "caddy_neo_admin_change_duration_seconds_bucket") ||
		!strings.Contains(string(out), `caddy_neo_unrouted_requests_total{reason="`) {
		t.Fatalf("metrics: %d\n%s", st, grepLines(string(out), "caddy_neo"))
	}

	// Config reload: the run-time tenant stays.
	if code, out := reload(t, inst); code != 200 {
		t.Fatalf("reload: %d %s", code, out)
	}
	check(harness.Client("127.0.0.1:8443", roots))

	// Restart: the run-time tenant stays.
	inst.Stop()
	inst, roots = start()
	c = harness.Client("127.0.0.1:8443", roots)
	check(c)

	// Delete: 404 on an open connection, handshake refused on a new one.
	if st, out, _ := inst.Admin("DELETE", "/neo/tenants/initech", nil); st != 200 {
		t.Fatalf("DELETE: %d %s", st, out)
	}
	resp, err = c.Get("https://initech.apps.localhost:8443/crm/x")
	if err != nil {
		t.Fatalf("after delete, open connection: %v", err)
	}
	if status, _, _, _ := neoTenant(t, resp); status != 404 {
		t.Fatalf("after delete: %d", status)
	}
	for _, host := range []string{"initech.apps.localhost", "initech-dev.apps.localhost", "initech.platform.localhost"} {
		conn, err := tls.Dial("tcp", "127.0.0.1:8443", &tls.Config{ServerName: host, RootCAs: roots})
		if err == nil {
			conn.Close()
			t.Fatalf("TLS handshake for %s accepted after delete", host)
		}
	}
	// Names never routed are refused at the handshake too.
	if conn, err := tls.Dial("tcp", "127.0.0.1:8443", &tls.Config{ServerName: "nobody.apps.localhost", RootCAs: roots}); err == nil {
		conn.Close()
		t.Fatal("TLS handshake for an unknown tenant accepted")
	}
	if st, _, _ := inst.Admin("GET", "/neo/tenants/initech", nil); st != 404 {
		t.Fatalf("GET after delete: %d", st)
	}
}

// reload forces a config reload of the running instance with the same
// Caddyfile (adapted by the server from the file's own directory).
func reload(t *testing.T, inst *harness.Instance) (int, string) {
	t.Helper()
	st, body, err := inst.Admin("GET", "/config/", nil)
	if err != nil || st != 200 {
		t.Fatalf("GET /config/: %d %v", st, err)
	}
	req, _ := http.NewRequest("POST", inst.AdminURL("/load"), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even though unchanged
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
