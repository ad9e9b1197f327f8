package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

// identityTenants puts acme and globex through the admin API: acme's dev
// stage has alice, its prod stage carol, its Platform alice; globex's dev
// stage has bob. Passwords go in plain text and are stored hashed.
func identityTenants(t *testing.T, e *identityEdge) {
	t.Helper()
	e.admin(t, "PUT", "/neo/tenants/acme", e.tenantJSON(`{
		"platform":{"users":{"alice":{"password":"alice-password","roles":["admin"]}}},
		"stages":{
			"dev":{"users":{"alice":{"name":"Alice","email":"alice@acme.test","password":"alice-password","roles":["ledger-reader"]}}},
			"prod":{"users":{"carol":{"password":"carol-password"}}}}}`), 201)
	e.admin(t, "PUT", "/neo/tenants/globex", e.tenantJSON(`{"stages":{"dev":{"users":{"bob":{"password":"bob-password"}}}}}`), 201)
	e.waitHost(t, "acme-dev.apps.localhost", "acme.apps.localhost", "globex-dev.apps.localhost")
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	data, err := base64.RawURLEncoding.DecodeString(h)
	var m map[string]any
	if err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("token header of %.40q", tok)
	}
	return m
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("token claims of %.40q", tok)
	}
	return m
}

// TestEdgeIdentityTokens: identity is tenant data on the admin API (secrets
// never returned), API clients get ES256 tokens with a kid and a 5-minute
// lifetime from the token endpoint, the tokens open their own tenant and
// stage only (403 on globex and on acme's prod stage), and an app can
// verify them with the host's published keys.
func TestEdgeIdentityTokens(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{})
	identityTenants(t, e)

	// Secrets are never returned: not the whole tenant, not the identity,
	// not a user, not the history.
	for _, p := range []string{"/neo/tenants/acme", "/neo/tenants/acme/identity", "/neo/tenants/acme/identity/stages/dev", "/neo/tenants/acme/identity/stages/dev/users/alice"} {
		body := string(e.admin(t, "GET", p, nil, 200))
		if strings.Contains(body, "password") || strings.Contains(body, "$2a$") || strings.Contains(body, "alice-password") {
			t.Fatalf("GET %s returns a secret: %s", p, body)
		}
	}
	if !strings.Contains(string(e.admin(t, "GET", "/neo/tenants/acme/identity/stages/dev/users/alice", nil, 200)), `"ledger-reader"`) {
		t.Fatal("user without its roles")
	}
	// Bad identity data: 400 naming the field, nothing changed.
	for body, field := range map[string]string{
		`{"stages":{"qa":{}}}`: "identity.stages.qa",
		`{"stages":{"dev":{"users":{"Alice!":{"password":"longenough"}}}}}`:                                                         "identity.stages.dev.users.Alice!",
		`{"stages":{"dev":{"providers":{"corp":{"issuer":"http://login.example.com","client_id":"x"}}}}}`:                           "identity.stages.dev.providers.corp.issuer",
		`{"stages":{"dev":{"providers":{"corp":{"issuer":"https://login.example.com","client_id":"x","client_secret":"s3cret"}}}}}`: "identity.stages.dev.providers.corp.client_secret",
	} {
		status, data, _ := e.inst.Admin("PUT", "/neo/tenants/globex/identity", body)
		if status != 400 || !strings.Contains(string(data), field) {
			t.Fatalf("PUT identity %s: %d %s, want 400 naming %s", body, status, data, field)
		}
	}

	// An API client of acme's dev stage; its secret is shown once.
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Realm        string `json:"realm"`
	}
	if err := json.Unmarshal(e.admin(t, "POST", "/neo/tenants/acme/identity/clients", `{"name":"ci","realm":"dev","roles":["deployer"]}`, 201), &created); err != nil || created.ClientSecret == "" {
		t.Fatalf("client creation: %+v %v", created, err)
	}
	list := string(e.admin(t, "GET", "/neo/tenants/acme/identity/clients", nil, 200))
	tenantBody := string(e.admin(t, "GET", "/neo/tenants/acme", nil, 200))
	for _, s := range []string{list, tenantBody} {
		if !strings.Contains(list, created.ClientID) || strings.Contains(s, created.ClientSecret) || strings.Contains(s, "sha256:") {
			t.Fatalf("client list or tenant shows the secret or its hash: %s", s)
		}
	}
	tokenURL := e.url("acme-dev.apps.localhost", "/identity/token")
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {created.ClientID}, "client_secret": {created.ClientSecret}}
	tok, _ := tokenFromJSON(t, e.postForm(t, nil, tokenURL, cc))
	h, c := jwtHeader(t, tok), jwtClaims(t, tok)
	if h["alg"] != "ES256" || !strings.HasPrefix(h["kid"].(string), "acme.dev.") {
		t.Fatalf("token header %v", h)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 || c["neo_tenant"] != "acme" || c["neo_realm"] != "dev" {
		t.Fatalf("token claims %v", c)
	}
	// Wrong secret and unknown client: the same answer.
	bad := e.postForm(t, nil, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {created.ClientID}, "client_secret": {"wrong"}})
	unknown := e.postForm(t, nil, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {"neo_AAAAAAAAAAAAAAAAAAAAAAAA"}, "client_secret": {"wrong"}})
	if bad.status != 401 || unknown.status != 401 || bad.body != unknown.body {
		t.Fatalf("wrong secret %d %q, unknown client %d %q", bad.status, bad.body, unknown.status, unknown.body)
	}
	// The client's credentials are acme's: refused on globex's token endpoint.
	if r := e.postForm(t, nil, e.url("globex-dev.apps.localhost", "/identity/token"), cc); r.status != 401 {
		t.Fatalf("acme client on globex: %d %s", r.status, r.body)
	}

	bearer := "Bearer " + tok
	for _, tc := range []struct {
		name, host, path, auth string
		want                   int
	}{
		{"public app, no token", "acme-dev.apps.localhost", "/orders/", "", 200},
		{"private app, no token (API client)", "acme-dev.apps.localhost", "/ledger/", "Bearer", 401},
		{"valid token", "acme-dev.apps.localhost", "/ledger/x", bearer, 200},
		{"acme dev token on globex dev", "globex-dev.apps.localhost", "/ledger/x", bearer, 403},
		{"acme dev token on acme prod", "acme.apps.localhost", "/ledger/x", bearer, 403},
		{"acme dev token on acme Platform API", "acme.platform.localhost", "/api/build/x", bearer, 403},
		{"forged signature", "acme-dev.apps.localhost", "/ledger/", "Bearer " + tok[:len(tok)-4] + "AAAA", 401},
		{"garbage", "acme-dev.apps.localhost", "/ledger/", "Bearer abc.def.ghi", 401},
		{"token in the query string is ignored", "acme-dev.apps.localhost", "/ledger/?access_token=" + tok, "Bearer", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			r := e.do(t, nil, "GET", e.url(tc.host, tc.path), nil, hdr...)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %.200q", r.status, tc.want, r.body)
			}
			if tc.want == 200 && tc.auth != "" {
				s := seen(t, r)
				if got := s.Headers["Neo-User"]; len(got) != 1 || got[0] != "client:"+created.ClientID {
					t.Fatalf("Neo-User %v", got)
				}
				if got := s.Headers["Neo-User-Roles"]; len(got) != 1 || got[0] != "deployer" {
					t.Fatalf("Neo-User-Roles %v", got)
				}
			}
			if tc.want == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}

	// An app verifies the token itself with the host's published keys.
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if r := e.do(t, nil, "GET", e.url("acme-dev.apps.localhost", "/identity/.well-known/openid-configuration"), nil); r.status != 200 || json.Unmarshal([]byte(r.body), &disc) != nil {
		t.Fatalf("discovery: %d %s", r.status, r.body)
	}
	if disc.Issuer != e.url("acme-dev.apps.localhost", "/identity") || disc.Issuer != c["iss"] {
		t.Fatalf("issuer %q, token iss %v", disc.Issuer, c["iss"])
	}
	var set jose.JSONWebKeySet
	r := e.do(t, nil, "GET", disc.JWKSURI, nil)
	if r.status != 200 || json.Unmarshal([]byte(r.body), &set) != nil || len(set.Key(h["kid"].(string))) != 1 {
		t.Fatalf("jwks %d %s", r.status, r.body)
	}
	if strings.Contains(r.body, `"d"`) {
		t.Fatalf("jwks holds a private key: %s", r.body)
	}
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(set.Key(h["kid"].(string))[0]); err != nil {
		t.Fatalf("token does not verify with the published key: %v", err)
	}
	// globex's keys are not acme's.
	r = e.do(t, nil, "GET", e.url("globex-dev.apps.localhost", "/identity/.well-known/jwks.json"), nil)
	if r.status != 200 || strings.Contains(r.body, h["kid"].(string)) {
		t.Fatalf("globex jwks: %d %s", r.status, r.body)
	}

	// A revoked client gets no more tokens.
	e.admin(t, "DELETE", "/neo/tenants/acme/identity/clients/"+created.ClientID, nil, 200)
	if r := e.postForm(t, nil, tokenURL, cc); r.status != 401 {
		t.Fatalf("revoked client: %d %s", r.status, r.body)
	}
}

// TestEdgeIdentitySignIn: a person signs in on the host's sign-in page and
// lands on the URL asked for; the session cookies are host-only, Secure,
// HttpOnly and SameSite, and never reach the app; other tenants and stages
// do not accept the session; refresh tokens rotate and a reused one revokes
// the chain; sign-out ends the session.
func TestEdgeIdentitySignIn(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{})
	identityTenants(t, e)
	host := "acme-dev.apps.localhost"
	b := e.browserClient(t)

	r := e.do(t, b, "GET", e.url(host, "/ledger/entries?id=7"), nil, "Accept", "text/html")
	if r.status != 302 || r.header.Get("Location") != "/identity/login?return=%2Fledger%2Fentries%3Fid%3D7" {
		t.Fatalf("private app without a session: %d %q", r.status, r.header.Get("Location"))
	}
	page := e.do(t, b, "GET", e.url(host, r.header.Get("Location")), nil)
	if page.status != 200 || !strings.Contains(page.body, `id="neo-tenant">acme<`) || !strings.Contains(page.body, `id="neo-realm">dev<`) {
		t.Fatalf("sign-in page: %d %.400q", page.status, page.body)
	}

	// Wrong password and unknown user: the same page.
	wrong := e.signInForm(t, b, host, "alice", "not-her-password", "/ledger/")
	nouser := e.signInForm(t, b, host, "mallory", "not-her-password", "/ledger/")
	otherTenant := e.signInForm(t, b, host, "bob", "bob-password", "/ledger/") // globex's user
	for _, x := range []resp{wrong, nouser, otherTenant} {
		if x.status != 401 || !strings.Contains(x.body, "Wrong user name or password.") {
			t.Fatalf("bad sign-in: %d %.300q", x.status, x.body)
		}
	}
	if strip := func(s string) string { return csrfRE.ReplaceAllString(s, "") }; strip(wrong.body) != strip(nouser.body) || strip(nouser.body) != strip(otherTenant.body) {
		t.Fatal("the answer tells an unknown user from a wrong password")
	}

	// An open redirect is refused: back to / on the same host.
	for _, ret := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "https:/evil.example"} {
		if r := e.signInForm(t, e.browserClient(t), host, "alice", "alice-password", ret); r.status != 303 || r.header.Get("Location") != "/" {
			t.Fatalf("return %q: %d to %q", ret, r.status, r.header.Get("Location"))
		}
	}

	r = e.signInForm(t, b, host, "alice", "alice-password", "/ledger/entries?id=7")
	if r.status != 303 || r.header.Get("Location") != "/ledger/entries?id=7" {
		t.Fatalf("sign-in: %d to %q: %.200q", r.status, r.header.Get("Location"), r.body)
	}
	names := map[string]bool{}
	for _, sc := range r.header.Values("Set-Cookie") {
		name, _, _ := strings.Cut(sc, "=")
		names[name] = true
		l := strings.ToLower(sc)
		if !strings.HasPrefix(name, "__Host-") || !strings.Contains(l, "secure") || !strings.Contains(l, "httponly") ||
			!strings.Contains(l, "samesite=") || strings.Contains(l, "domain=") || !strings.Contains(l, "path=/") {
			t.Fatalf("cookie %q is not host-only, Secure, HttpOnly, SameSite", sc)
		}
	}
	if !names["__Host-neo_at"] || !names["__Host-neo_rt"] {
		t.Fatalf("session cookies %v", names)
	}
	s := seen(t, e.do(t, b, "GET", e.url(host, "/ledger/entries?id=7"), nil))
	if s.Headers["Neo-User"][0] != "alice" || s.Headers["Neo-User-Roles"][0] != "ledger-reader" {
		t.Fatalf("replica saw %v", s.Headers)
	}
	if c := strings.Join(s.Headers["Cookie"], ";"); strings.Contains(c, "neo_") {
		t.Fatalf("identity cookies reached the app: %q", c)
	}
	if a := s.Headers["Authorization"]; len(a) != 1 || !strings.HasPrefix(a[0], "Bearer ey") {
		t.Fatalf("the app did not get the access token: %v", a)
	}
	// The same session is worth nothing on another stage or tenant (the
	// cookies are host-only; sent anyway, they are refused).
	var at, rt string
	for _, c := range b.Jar.Cookies(mustURL(e.url(host, "/"))) {
		switch c.Name {
		case "__Host-neo_at":
			at = c.Value
		case "__Host-neo_rt":
			rt = c.Value
		}
	}
	if len(b.Jar.Cookies(mustURL(e.url("acme.apps.localhost", "/")))) != 0 {
		t.Fatal("acme-dev's cookies are sent to acme's prod host")
	}
	for _, h := range []string{"acme.apps.localhost", "globex-dev.apps.localhost"} {
		r := e.do(t, nil, "GET", e.url(h, "/ledger/"), nil, "Cookie", "__Host-neo_at="+at+"; __Host-neo_rt="+rt)
		if r.status != 403 {
			t.Fatalf("acme dev session on %s: %d", h, r.status)
		}
		r = e.do(t, nil, "GET", e.url(h, "/ledger/"), nil, "Cookie", "__Host-neo_rt="+rt, "Accept", "text/html")
		if r.status != 302 {
			t.Fatalf("acme dev refresh token on %s: %d", h, r.status)
		}
	}

	// Refresh tokens rotate on every use; reusing one revokes the chain.
	refresh := func(tok string) resp {
		return e.postForm(t, nil, e.url(host, "/identity/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}})
	}
	at2, rt2 := tokenFromJSON(t, refresh(rt))
	if rt2 == "" || rt2 == rt || at2 == at {
		t.Fatal("refresh did not rotate")
	}
	at3, rt3 := tokenFromJSON(t, refresh(rt2))
	if r := refresh(rt); r.status != 400 || !strings.Contains(r.body, "invalid_grant") {
		t.Fatalf("reused refresh token: %d %s", r.status, r.body)
	}
	if r := refresh(rt3); r.status != 400 {
		t.Fatalf("the chain's newest token after a reuse: %d %s", r.status, r.body)
	}
	// Access tokens already issued stay valid until they expire (5 minutes).
	if r := e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Authorization", "Bearer "+at3); r.status != 200 {
		t.Fatalf("access token after the chain's revocation: %d", r.status)
	}

	// A new sign-in, then sign-out: the session's refresh token stops working.
	b = e.browserClient(t)
	if r := e.signInForm(t, b, host, "alice", "alice-password", "/ledger/"); r.status != 303 {
		t.Fatalf("sign-in: %d", r.status)
	}
	var rtB string
	for _, c := range b.Jar.Cookies(mustURL(e.url(host, "/"))) {
		if c.Name == "__Host-neo_rt" {
			rtB = c.Value
		}
	}
	lo := e.do(t, b, "GET", e.url(host, "/identity/logout"), nil)
	m := csrfRE.FindStringSubmatch(lo.body)
	if m == nil {
		t.Fatalf("sign-out page %.300q", lo.body)
	}
	if r := e.postForm(t, b, e.url(host, "/identity/logout"), url.Values{"csrf": {m[1]}}); r.status != 200 || !strings.Contains(r.body, "neo-signed-out") {
		t.Fatalf("sign-out: %d %.300q", r.status, r.body)
	}
	if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 302 {
		t.Fatalf("after sign-out: %d", r.status)
	}
	if r := refresh(rtB); r.status != 400 {
		t.Fatalf("refresh token after sign-out: %d", r.status)
	}

	// A password change through the admin API ends the user's sessions.
	b = e.browserClient(t)
	e.signInForm(t, b, host, "alice", "alice-password", "/")
	var rtC string
	for _, c := range b.Jar.Cookies(mustURL(e.url(host, "/"))) {
		if c.Name == "__Host-neo_rt" {
			rtC = c.Value
		}
	}
	e.admin(t, "PUT", "/neo/tenants/acme/identity/stages/dev/users/alice", `{"password":"a-new-password","roles":["ledger-reader"]}`, 200)
	if r := refresh(rtC); r.status != 400 {
		t.Fatalf("refresh after a password change: %d", r.status)
	}
	if r := e.signInForm(t, e.browserClient(t), host, "alice", "a-new-password", "/"); r.status != 303 {
		t.Fatalf("sign-in with the new password: %d", r.status)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestIdentityTenantFile: identity in the Caddy config (a tenant file's
// identity block with a bcrypt hash, and a plain-text demo password given
// apart from the tenant as the local topology does).
func TestIdentityTenantFile(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("dana-password"), 4)
	e := startIdentityEdge(t, identityEdgeOpts{neoExtra: `
		tenant initech {
			app crm {
				stage prod {
					replica 127.0.0.1:1
				}
			}
			identity {
				stage prod {
					user dana {
						password_hash "` + string(hash) + `"
					}
				}
			}
		}
		tenant hooli {
			app crm {
				stage prod {
					replica 127.0.0.1:1
				}
			}
		}
		identity hooli {
			stage prod {
				user erlich {
					password demo-password
				}
			}
		}`})
	for host, creds := range map[string][2]string{"initech.apps.localhost": {"dana", "dana-password"}, "hooli.apps.localhost": {"erlich", "demo-password"}} {
		if err := waitServingPath(e, host, "/identity/login"); err != nil {
			t.Fatal(err)
		}
		if r := e.signInForm(t, e.browserClient(t), host, creds[0], creds[1], "/crm/"); r.status != 303 || r.header.Get("Location") != "/crm/" {
			t.Fatalf("%s: %d %q", host, r.status, r.header.Get("Location"))
		}
	}
	// Config tenants are read-only through the admin API; their secrets are never shown.
	e.admin(t, "POST", "/neo/tenants/initech/identity/clients", `{}`, 409)
	if body := string(e.admin(t, "GET", "/neo/tenants/hooli", nil, 200)); strings.Contains(body, "demo-password") {
		t.Fatalf("config tenant's password shown: %s", body)
	}
}

func waitServingPath(e *identityEdge, host, path string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := e.client.Get(e.url(host, path))
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIdentityLimits: the platform's public API limit per organization
// (NEO_RL_API_EVENTS, counted after identity, 429 with Retry-After), the
// brute-force limit on the sign-in form and the WAF on the identity
// endpoints.
func TestIdentityLimits(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{env: []string{"NEO_RL_API_EVENTS=3", "NEO_RL_LOGIN_EVENTS=6"}})
	identityTenants(t, e)
	e.waitHost(t, "acme.platform.localhost", "globex.platform.localhost")
	clientToken := func(tenant string) string {
		var c struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		json.Unmarshal(e.admin(t, "POST", "/neo/tenants/"+tenant+"/identity/clients", `{"realm":"platform"}`, 201), &c)
		tok, _ := tokenFromJSON(t, e.postForm(t, nil, e.url(tenant+".platform.localhost", "/identity/token"),
			url.Values{"grant_type": {"client_credentials"}}, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.ClientID+":"+c.ClientSecret))))
		return tok
	}
	acme, globex := clientToken("acme"), clientToken("globex")
	api := func(tenant, tok string) resp {
		return e.do(t, nil, "GET", e.url(tenant+".platform.localhost", "/api/build/v1/status"), nil, "Authorization", "Bearer "+tok)
	}
	// Requests without a valid token do not use up acme's quota.
	for range 5 {
		if r := api("acme", "forged"); r.status != 401 {
			t.Fatalf("forged token: %d", r.status)
		}
	}
	for i := range 3 {
		if r := api("acme", acme); r.status != 200 {
			t.Fatalf("acme API request %d: %d %.200q", i+1, r.status, r.body)
		}
	}
	r := api("acme", acme)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("acme's 4th API request: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if r := api("globex", globex); r.status != 200 {
		t.Fatalf("globex during acme's limit: %d", r.status)
	}

	// POSTs to /identity/ from one address (the two token requests above,
	// then sign-in attempts): the 7th gets 429, whatever the user.
	host := "acme-dev.apps.localhost"
	for i := range 4 {
		if r := e.signInForm(t, e.browserClient(t), host, fmt.Sprintf("guess%d", i), "wrong-password", "/"); r.status != 401 {
			t.Fatalf("attempt %d: %d", i+1, r.status)
		}
	}
	if r := e.signInForm(t, e.browserClient(t), host, "alice", "alice-password", "/"); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("5th sign-in attempt: %d", r.status)
	}
	// The WAF inspects the identity endpoints.
	if r := e.do(t, nil, "GET", e.url(host, "/identity/login?return=/x%27%20UNION%20SELECT%20password%20FROM%20users--"), nil); r.status != 403 {
		t.Fatalf("SQL injection at the sign-in page: %d", r.status)
	}
	// The metrics count what happened, without a tenant label.
	metrics := string(e.admin(t, "GET", "/metrics", nil, 200))
	for _, m := range []string{
		`caddy_neo_identity_signins_total{method="password",result="refused"} 4`,
		`caddy_neo_identity_tokens_total{grant="client_credentials",result="ok"} 2`,
		`caddy_neo_identity_refused_total{status="401"} 5`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// TestIdentityBrowserRenewal: a browser whose access token expired (only
// its session cookie left) is renewed on its next request: the request is
// served and both cookies are replaced (the refresh token rotated).
func TestIdentityBrowserRenewal(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{})
	identityTenants(t, e)
	host := "acme-dev.apps.localhost"
	b := e.browserClient(t)
	e.signInForm(t, b, host, "alice", "alice-password", "/")
	var rt string
	for _, c := range b.Jar.Cookies(mustURL(e.url(host, "/"))) {
		if c.Name == "__Host-neo_rt" {
			rt = c.Value
		}
	}
	r := e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Cookie", "__Host-neo_rt="+rt, "Accept", "text/html")
	if s := seen(t, r); s.Headers["Neo-User"][0] != "alice" {
		t.Fatalf("renewed request: %v", s.Headers)
	}
	var newAT, newRT string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		switch c.Name {
		case "__Host-neo_at":
			newAT = c.Value
		case "__Host-neo_rt":
			newRT = c.Value
		}
	}
	if newAT == "" || newRT == "" || newRT == rt {
		t.Fatalf("renewal set at %t, rotated rt %t", newAT != "", newRT != "" && newRT != rt)
	}
	// A parallel request of the same browser with the token just replaced
	// is served within the grace (no new refresh token) ...
	r = e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Cookie", "__Host-neo_rt="+rt, "Accept", "text/html")
	if r.status != 200 || strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "__Host-neo_rt=") {
		t.Fatalf("parallel renewal: %d %q", r.status, r.header.Values("Set-Cookie"))
	}
	// ... and the explicit token endpoint allows no reuse at all: the chain ends.
	if r := e.postForm(t, nil, e.url(host, "/identity/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); r.status != 400 {
		t.Fatalf("reuse at the token endpoint: %d", r.status)
	}
	if r := e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Cookie", "__Host-neo_rt="+newRT, "Accept", "text/html"); r.status != 302 {
		t.Fatalf("the chain's newest token after the reuse: %d", r.status)
	}
}
