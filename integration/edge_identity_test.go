package integration

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/projectneo/caddy-neo/integration/harness"
)

const testJWTKey = "integration-test-signing-key-0123456789"

// startIdentityEdge runs the identity snippets on acme-dev and globex-dev
// hosts: /orders is public, /ledger requires a token bound to the host's
// tenant and stage. The tenant and stage come from a map of the host (the
// registry's routing does this in the role Caddyfiles).
func startIdentityEdge(t *testing.T) (*http.Client, func(host, path string) string) {
	t.Helper()
	ports, err := harness.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	admin, httpPort, httpsPort, echoPort := ports[0], ports[1], ports[2], ports[3]
	home := t.TempDir()
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	import %[5]s/caddyfiles/snippets/identity-global.caddy
}

import %[5]s/caddyfiles/snippets/identity.caddy

acme-dev.apps.localhost, globex-dev.apps.localhost {
	map {host} {neo.tenant} {neo.stage} {
		acme-dev.apps.localhost acme dev
		globex-dev.apps.localhost globex dev
	}
	route {
		import neo_signin
		route /ledger* {
			import neo_require_identity
		}
		reverse_proxy 127.0.0.1:%[4]d
	}
}

http://:%[4]d {
	neo_echo {
		replica identity-test
	}
}
`, admin, httpPort, httpsPort, echoPort, harness.RepoRoot())
	inst := harness.Start(t, harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		Home:    home,
		Env:     []string{"NEO_JWT_KEY=" + testJWTKey, "NEO_IDENTITY_DB=" + filepath.Join(home, "users.json")},
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", httpsPort), fmt.Sprintf("127.0.0.1:%d", echoPort)},
	})
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	c := harness.Client(addr, roots)
	url := func(host, path string) string { return fmt.Sprintf("https://%s:%d%s", host, httpsPort, path) }
	for _, h := range []string{"acme-dev.apps.localhost", "globex-dev.apps.localhost"} {
		if err := harness.WaitServing(c, url(h, "/orders/"), 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return c, url
}

// token signs an access token like the portal's: HS512 with the shared key.
func token(t *testing.T, key string, roles []string, exp time.Duration) string {
	t.Helper()
	claims := jwt.MapClaims{
		"sub":    "alice",
		"email":  "alice@acme.localhost",
		"name":   "Alice",
		"roles":  roles,
		"iat":    time.Now().Unix(),
		"nbf":    time.Now().Add(-time.Minute).Unix(),
		"exp":    time.Now().Add(exp).Unix(),
		"iss":    "https://acme-dev.apps.localhost/auth",
		"origin": "local",
		"realm":  "local",
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEdgeIdentity(t *testing.T) {
	c, url := startIdentityEdge(t)
	acmeRoles := []string{"acme/member", "acme/dev/user", "acme/prod/user"}
	valid := token(t, testJWTKey, acmeRoles, 5*time.Minute)
	req := func(host, path string, hdr ...string) (int, http.Header, string) {
		u := path
		if strings.HasPrefix(path, "/") {
			u = url(host, path)
		}
		r, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	for _, tc := range []struct {
		name, host, path string
		hdr              []string
		want             int
	}{
		{"public app, no token", "acme-dev.apps.localhost", "/orders/", nil, 200},
		{"private app, browser without a session", "acme-dev.apps.localhost", "/ledger/", []string{"Accept", "text/html"}, 302},
		{"private app, API client without a token", "acme-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer"}, 401},
		{"valid acme token on acme", "acme-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer " + valid}, 200},
		{"valid acme token in the cookie", "acme-dev.apps.localhost", "/ledger/", []string{"Cookie", "AUTHP_ACCESS_TOKEN=" + valid}, 200},
		{"acme token on globex", "globex-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer " + valid}, 403},
		{"acme token in a cookie on globex", "globex-dev.apps.localhost", "/ledger/", []string{"Cookie", "AUTHP_ACCESS_TOKEN=" + valid}, 403},
		{"acme prod-only token on acme dev", "acme-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer " + token(t, testJWTKey, []string{"acme/prod/user"}, time.Minute)}, 403},
		{"expired token", "acme-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer " + token(t, testJWTKey, acmeRoles, -time.Minute)}, 401},
		{"forged signature", "acme-dev.apps.localhost", "/ledger/", []string{"Authorization", "Bearer " + token(t, "some-other-key-0123456789abcdef", acmeRoles, time.Minute)}, 401},
		{"token in the query string is ignored", "acme-dev.apps.localhost", "/ledger/?access_token=" + valid, []string{"Authorization", "Bearer"}, 401},
		{"token in the query string, browser", "acme-dev.apps.localhost", "/ledger/?access_token=" + valid, []string{"Accept", "text/html"}, 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := req(tc.host, tc.path, tc.hdr...)
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %.200q", status, tc.want, body)
			}
			if status == 302 && !strings.Contains(hdr.Get("Location"), "/auth/") {
				t.Fatalf("redirect to %q, want the sign-in portal", hdr.Get("Location"))
			}
			if status == 200 && !strings.Contains(body, "identity-test") {
				t.Fatalf("not served by the replica: %.200q", body)
			}
			if status != 200 && strings.Contains(body, "identity-test") {
				t.Fatalf("refused request reached the replica")
			}
		})
	}
	// The portal answers on every tenant host.
	for _, host := range []string{"acme-dev.apps.localhost", "globex-dev.apps.localhost"} {
		status, hdr, _ := req(host, "/auth/", "Accept", "text/html")
		if status == http.StatusFound {
			status, _, _ = req(host, hdr.Get("Location"), "Accept", "text/html")
		}
		if status != 200 {
			t.Fatalf("portal on %s: %d", host, status)
		}
	}
}
