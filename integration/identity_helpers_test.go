package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// identityEdge is an edge with the real edge route (limits, rate limits,
// WAF), the tenant registry, neo_signin and neo_identity, in front of a
// replica that answers with the headers it received.
type identityEdge struct {
	inst      *harness.Instance
	client    *http.Client
	httpsPort int
	backend   *httptest.Server
}

func (e *identityEdge) url(host, path string) string {
	return fmt.Sprintf("https://%s:%d%s", host, e.httpsPort, path)
}

// seenRequest is what the replica received.
type seenRequest struct {
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

func headerReplica(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seenRequest{Path: r.URL.Path, Headers: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// identityEdgeOpts tune startIdentityEdge.
type identityEdgeOpts struct {
	identity string   // the neo_identity global option's block body
	neoExtra string   // more lines of the neo block (tenants)
	store    string   // the neo block's store line; default a file store in home
	globals  string   // more global options
	env      []string // more environment
	home     string
	ports    []int // admin, http, https (to restart on the same ports)
	backend  *httptest.Server
}

func startIdentityEdge(t *testing.T, o identityEdgeOpts) *identityEdge {
	t.Helper()
	ports := o.ports
	if ports == nil {
		var err error
		if ports, err = harness.FreePorts(3); err != nil {
			t.Fatal(err)
		}
	}
	admin, httpPort, httpsPort := ports[0], ports[1], ports[2]
	home := o.home
	if home == "" {
		home = t.TempDir()
	}
	store := o.store
	if store == "" {
		store = "store file " + home + "/tenants"
	}
	be := o.backend
	if be == nil {
		be = headerReplica(t)
	}
	beAddr := strings.TrimPrefix(be.URL, "http://")
	root := harness.RepoRoot()
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	on_demand_tls {
		permission neo
	}
	import %[4]s/caddyfiles/snippets/edge-global.caddy
	%[9]s
	neo_identity {
		%[5]s
	}
	neo {
		zone az-a
		stages dev prod
		%[6]s
		service build /api/build/ {
			replica %[7]s az-a
		}
		%[8]s
	}
}

import %[4]s/caddyfiles/snippets/edge.caddy
import %[4]s/caddyfiles/snippets/identity.caddy

https:// {
	tls {
		on_demand
	}
	import neo_edge {
		neo_signin
		neo_route
		@neo_private expression `+"`{neo.public} != \"true\"`"+`
		route @neo_private {
			neo_identity
			import neo_api_limit
		}
		reverse_proxy {
			dynamic neo
		}
	}
}
`, admin, httpPort, httpsPort, root, o.identity, store, beAddr, o.neoExtra, o.globals)
	env := append([]string{"NEO_RL_LOGIN_EVENTS=1000", "NEO_RL_API_EVENTS=1000", "NEO_WAF_AUDIT_LOG=/dev/null"}, o.env...)
	inst := harness.Start(t, harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		Home:    home,
		Env:     env,
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", httpsPort)},
	})
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	return &identityEdge{inst: inst, client: harness.Client(fmt.Sprintf("127.0.0.1:%d", httpsPort), roots), httpsPort: httpsPort, backend: be}
}

// tenantJSON is a run-time tenant with a public app orders and a private
// app ledger in dev and prod, served by the edge's replica.
func (e *identityEdge) tenantJSON(identity string) string {
	be := strings.TrimPrefix(e.backend.URL, "http://")
	st := fmt.Sprintf(`{"dev":{"replicas":[{"address":%q}]},"prod":{"replicas":[{"address":%q}]}}`, be, be)
	return fmt.Sprintf(`{"apps":{"orders":{"public":true,"stages":%s},"ledger":{"stages":%s},"wiki":{"stages":%s}},"identity":%s}`, st, st, st, identity)
}

func (e *identityEdge) admin(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	status, data, err := e.inst.Admin(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, data)
	}
	return data
}

// waitHost waits until host's certificate is issued and the edge answers.
func (e *identityEdge) waitHost(t *testing.T, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		if err := harness.WaitServing(e.client, e.url(h, "/orders/"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *identityEdge) do(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) resp {
	t.Helper()
	if c == nil {
		c = e.client
	}
	r, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(data)}
}

func (e *identityEdge) postForm(t *testing.T, c *http.Client, u string, form url.Values, hdr ...string) resp {
	t.Helper()
	return e.do(t, c, "POST", u, strings.NewReader(form.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

// browserClient is a client with a cookie jar (no redirects followed).
func (e *identityEdge) browserClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *e.client
	c.Jar = jar
	return &c
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInForm signs in through the form as a browser would; it returns the
// response to the POST.
func (e *identityEdge) signInForm(t *testing.T, c *http.Client, host, user, password, ret string) resp {
	t.Helper()
	page := e.do(t, c, "GET", e.url(host, "/identity/login?return="+url.QueryEscape(ret)), nil)
	m := csrfRE.FindStringSubmatch(page.body)
	if page.status != 200 || m == nil {
		t.Fatalf("sign-in page on %s: %d %.300q", host, page.status, page.body)
	}
	return e.postForm(t, c, e.url(host, "/identity/login"), url.Values{"username": {user}, "password": {password}, "csrf": {m[1]}, "return": {ret}})
}

func seen(t *testing.T, r resp) seenRequest {
	t.Helper()
	var s seenRequest
	if r.status != 200 || json.Unmarshal([]byte(r.body), &s) != nil {
		t.Fatalf("not served by the replica: %d %.300q", r.status, r.body)
	}
	return s
}

func tokenFromJSON(t *testing.T, r resp) (access, refresh string) {
	t.Helper()
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %d %.300q", r.status, r.body)
	}
	return tr.AccessToken, tr.RefreshToken
}
