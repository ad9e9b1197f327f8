package integration

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// startOP runs zitadel/oidc's example OpenID provider on loopback (a real
// provider: discovery, authorization code with PKCE, token endpoint, ID
// tokens, userinfo), with a web client for redirectURI. It records the
// authorization requests it receives.
func startOP(t *testing.T, clientID, secret, redirectURI string) (issuer string, authorizeQueries func() []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer = fmt.Sprintf("http://localhost:%d/", l.Addr().(*net.TCPAddr).Port)
	storage.RegisterClients(storage.WebClient(clientID, secret, redirectURI))
	router := exampleop.SetupServer(issuer, storage.NewStorage(storage.NewUserStore(issuer)),
		slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), false)
	var mu sync.Mutex
	var queries []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth" { // the example OP's authorization endpoint
			mu.Lock()
			queries = append(queries, r.URL.RawQuery)
			mu.Unlock()
		}
		router.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return issuer, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), queries...) }
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestBrowserSignInOIDC: acme's dev stage signs in with an external OpenID
// provider, configured at run time through the admin API: a person opens
// acme's private app, picks the provider on acme's sign-in page, signs in at
// the provider, and lands on the URL asked for, with the roles the tenant's
// claim mapping grants. The edge used the authorization code flow with PKCE.
func TestBrowserSignInOIDC(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{env: []string{"NEO_OIDC_ACME_ZITADEL=op-secret"}})
	host := "acme-dev.apps.localhost"
	issuer, authorizeQueries := startOP(t, "neo-acme", "op-secret", e.url(host, "/identity/callback"))
	e.admin(t, "PUT", "/neo/tenants/acme", e.tenantJSON(fmt.Sprintf(`{"stages":{"dev":{"providers":{"zitadel":{
		"label":"Sign in with Zitadel","issuer":%q,"client_id":"neo-acme","client_secret":"env:NEO_OIDC_ACME_ZITADEL",
		"role_claim":"email","role_map":{"test-user2@zitadel.ch":["staff"]},"require_role":true}}}}}`, issuer)), 201)
	e.waitHost(t, host)

	ctx := chromium(t)
	if err := chromedp.Run(ctx, network.Enable()); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(e.url(host, "/ledger/books?year=2026"))); err != nil {
		t.Fatal(err)
	}
	p := readPage(t, ctx, "/identity/login", "oidc-1-acme-sign-in")
	if p.Tenant != "acme" || !strings.Contains(p.Body, "Sign in with Zitadel") || strings.Contains(p.Body, "User name") {
		t.Fatalf("sign-in page: %+v", p)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`a.neo-provider`, chromedp.ByQuery), chromedp.WaitVisible(`#username`, chromedp.ByID)); err != nil {
		t.Fatalf("to the provider: %v", err)
	}
	op := readPage(t, ctx, "/login/username", "oidc-2-provider-login")
	if !strings.HasPrefix(op.URL, issuer) {
		t.Fatalf("browser at %s, want the provider %s", op.URL, issuer)
	}
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#username`, "test-user2", chromedp.ByID),
		chromedp.SendKeys(`#password`, "verysecure", chromedp.ByID),
		chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("signing in at the provider: %v", err)
	}
	p = readPage(t, ctx, "/ledger/books?year=2026", "oidc-3-ledger")
	if !strings.Contains(p.Body, `"Neo-User":["zitadel:id2"]`) || !strings.Contains(p.Body, `"Neo-User-Roles":["staff"]`) || !strings.Contains(p.URL, host) {
		t.Fatalf("acme's app after the provider's sign-in: %s %.400q", p.URL, p.Body)
	}
	qs := authorizeQueries()
	if len(qs) != 1 || !strings.Contains(qs[0], "code_challenge_method=S256") || !strings.Contains(qs[0], "code_challenge=") ||
		!strings.Contains(qs[0], "response_type=code") || !strings.Contains(qs[0], "nonce=") || !strings.Contains(qs[0], "state=") {
		t.Fatalf("authorization requests at the provider: %q", qs)
	}

	// The provider's other user gets no role from acme's mapping and
	// require_role is set: refused, back on acme's sign-in page.
	ctx2 := chromium(t)
	chromedp.Run(ctx2, chromedp.Navigate(e.url(host, "/ledger/")))
	readPage(t, ctx2, "/identity/login", "oidc-4-second-browser")
	if err := chromedp.Run(ctx2, chromedp.Click(`a.neo-provider`, chromedp.ByQuery), chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "test-user@localhost", chromedp.ByID),
		chromedp.SendKeys(`#password`, "verysecure", chromedp.ByID),
		chromedp.Click(`button[type=submit]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if p := readPage(t, ctx2, "/identity/callback", "oidc-5-no-role"); !strings.Contains(p.Body, "Sign-in at the identity provider failed") {
		t.Fatalf("user without a mapped role: %.300q", p.Body)
	}
}
