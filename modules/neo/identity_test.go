package neo

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/crypto/bcrypt"
)

func adminJSON(t *testing.T, a *App, method, path string, body string, want int) string {
	t.Helper()
	segs, _ := adminPath("/neo/" + path)
	st, v, err := a.handleAdmin(method, segs, []byte(body))
	if st != want {
		t.Fatalf("%s %s: %d (%v), want %d", method, path, st, err, want)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func TestIdentityAdmin(t *testing.T) {
	a := newTestApp(t, demoTenants())
	adminJSON(t, a, "PUT", "tenants/initech", `{"identity":{"stages":{"dev":{"users":{"dana":{"password":"dana-password","roles":["r1"]}}}}}}`, 201)
	stored := func() *IdentityConfig { tn, _ := a.reg.Snapshot().Tenant("initech"); return tn.Config.Identity }
	h := stored().Stages["dev"].Users["dana"].PasswordHash
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("dana-password")) != nil || stored().Stages["dev"].Users["dana"].Password != "" {
		t.Fatalf("stored %q, want the bcrypt hash only", h)
	}
	// Reads never show a secret.
	for _, p := range []string{"tenants/initech", "tenants/initech/identity", "tenants/initech/identity/stages/dev", "tenants/initech/identity/stages/dev/users/dana"} {
		if got := adminJSON(t, a, "GET", p, "", 200); strings.Contains(got, "password") || strings.Contains(got, "$2a$") {
			t.Fatalf("GET %s shows a secret: %s", p, got)
		}
	}
	// What GET returns can be written back: the password is kept.
	adminJSON(t, a, "PUT", "tenants/initech", adminJSON(t, a, "GET", "tenants/initech", "", 200), 200)
	if stored().Stages["dev"].Users["dana"].PasswordHash != h {
		t.Fatal("a round trip through GET lost the password")
	}
	adminJSON(t, a, "PUT", "tenants/initech/identity/stages/dev/users/dana", `{"roles":["r2"]}`, 200)
	if u := stored().Stages["dev"].Users["dana"]; u.PasswordHash != h || u.Roles[0] != "r2" {
		t.Fatalf("user update without password: %+v", u)
	}
	adminJSON(t, a, "PUT", "tenants/initech/identity/platform/users/erin", `{"password":"erin-password"}`, 201)
	adminJSON(t, a, "PUT", "tenants/initech/identity/stages/prod/providers/corp", `{"issuer":"https://login.example.com","client_id":"c","client_secret":"env:NEO_OIDC_CORP"}`, 201)
	if got := adminJSON(t, a, "GET", "tenants/initech/identity/stages/prod/providers/corp", "", 200); !strings.Contains(got, "env:NEO_OIDC_CORP") {
		t.Fatalf("provider: %s", got)
	}
	adminJSON(t, a, "GET", "tenants/initech/identity/stages/qa", "", 404)
	adminJSON(t, a, "GET", "tenants/initech/identity/stages/dev/users/nobody", "", 404)
	adminJSON(t, a, "PUT", "tenants/initech/identity/stages/dev/users/dana", `{"password":"short"}`, 400)

	// API clients: the secret is in the creation's answer only, stored hashed.
	var cc ClientCreated
	json.Unmarshal([]byte(adminJSON(t, a, "PUT", "tenants/initech/identity/clients", `{"name":"ci","realm":"dev"}`, 201)), &cc)
	c := stored().Clients[cc.ClientID]
	if cc.ClientSecret == "" || c == nil || c.SecretHash != HashClientSecret(cc.ClientSecret) || c.Realm != "dev" {
		t.Fatalf("created %+v, stored %+v", cc, c)
	}
	for _, p := range []string{"tenants/initech/identity/clients", "tenants/initech/identity/clients/" + cc.ClientID, "tenants/initech"} {
		if got := adminJSON(t, a, "GET", p, "", 200); strings.Contains(got, cc.ClientSecret) || strings.Contains(got, "sha256:") {
			t.Fatalf("GET %s shows the client secret or its hash: %s", p, got)
		}
	}
	adminJSON(t, a, "PUT", "tenants/initech", adminJSON(t, a, "GET", "tenants/initech", "", 200), 200)
	if stored().Clients[cc.ClientID].SecretHash != c.SecretHash {
		t.Fatal("a round trip through GET lost the client")
	}
	adminJSON(t, a, "PUT", "tenants/initech/identity/clients", `{"realm":"qa"}`, 400)
	adminJSON(t, a, "DELETE", "tenants/initech/identity/clients/"+cc.ClientID, "", 200)
	adminJSON(t, a, "DELETE", "tenants/initech/identity/clients/"+cc.ClientID, "", 404)
	// Config tenants are read-only.
	adminJSON(t, a, "PUT", "tenants/acme/identity/clients", `{}`, 409)
}

func TestIdentityValidation(t *testing.T) {
	a := newTestApp(t, demoTenants())
	for body, field := range map[string]string{
		`{"stages":{"qa":{}}}`:    "tenants.initech.identity.stages.qa: unknown stage",
		`{"stages":{"dev":null}}`: "tenants.initech.identity.stages.dev: missing realm",
		`{"platform":{"users":{"Dana":{"password_hash":"$2a$10$abcdefghijklmnopqrstuuM5ON9gq9cz4EGqOGMd/NKtv0HqyD8Ry"}}}}`: "tenants.initech.identity.platform.users.Dana",
		`{"platform":{"users":{"dana":{}}}}`:                          "tenants.initech.identity.platform.users.dana: password or password_hash required",
		`{"platform":{"users":{"dana":{"password_hash":"md5:abc"}}}}`: "tenants.initech.identity.platform.users.dana.password_hash",
		`{"platform":{"users":{"dana":{"password_hash":"$2a$10$abcdefghijklmnopqrstuuM5ON9gq9cz4EGqOGMd/NKtv0HqyD8Ry","roles":["a b"]}}}}`: "tenants.initech.identity.platform.users.dana.roles[0]",
		`{"platform":{"providers":{"corp":{"issuer":"ftp://x","client_id":"c"}}}}`:                                                         "tenants.initech.identity.platform.providers.corp.issuer",
		`{"platform":{"providers":{"corp":{"issuer":"https://x"}}}}`:                                                                       "tenants.initech.identity.platform.providers.corp.client_id",
		`{"platform":{"providers":{"corp":{"issuer":"https://x","client_id":"c","client_secret":"env:HOME"}}}}`:                            "tenants.initech.identity.platform.providers.corp.client_secret",
		`{"platform":{"providers":{"Corp":{"issuer":"https://x","client_id":"c"}}}}`:                                                       "tenants.initech.identity.platform.providers.Corp",
		`{"clients":{"short":{"secret_hash":"sha256:00"}}}`:                                                                                "tenants.initech.identity.clients.short",
		`{"clients":{"neo_0123456789abcdef":{"secret_hash":"plain"}}}`:                                                                     "tenants.initech.identity.clients.neo_0123456789abcdef.secret_hash",
		`{"platform":{"userz":{}}}`: "userz: unknown field",
	} {
		segs, _ := adminPath("/neo/tenants/initech")
		st, _, err := a.handleAdmin(http.MethodPut, segs, []byte(`{"identity":`+body+`}`))
		if st != 400 || err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("identity %s: %d %v, want 400 naming %q", body, st, err, field)
		}
	}
	// A store tenant holding a plain-text password (written to the store by
	// something else than the admin API) is refused.
	if _, err := a.g.compileTenant("initech", SourceStore, &TenantConfig{Identity: &IdentityConfig{Platform: &RealmConfig{Users: map[string]*UserConfig{"dana": {Password: "dana-password"}}}}}); err == nil {
		t.Fatal("plain-text password accepted in a store tenant")
	}
	if _, err := a.g.compileTenant("initech", SourceConfig, &TenantConfig{Identity: &IdentityConfig{Platform: &RealmConfig{Users: map[string]*UserConfig{"dana": {Password: "dana-password"}}}}}); err != nil {
		t.Fatalf("plain-text password of the Caddy config: %v", err)
	}
}

func TestIdentityCaddyfileErrors(t *testing.T) {
	for cf, want := range map[string]string{
		"neo {\n identity acme {\n }\n}":                                                              "no tenant \"acme\" defined before it",
		"neo {\n tenant acme {\n identity {\n }\n }\n identity acme {\n }\n}":                         "identity defined twice",
		"neo {\n tenant acme {\n identity {\n stage dev {\n user a {\n colour red\n }\n }\n }\n }\n}": "unknown subdirective \"colour\"",
		"neo {\n tenant acme {\n identity {\n stage dev {\n }\n stage dev {\n }\n }\n }\n}":           "stage \"dev\" given twice",
		"neo {\n tenant acme {\n identity {\n platform {\n oidc c {\n role x\n }\n }\n }\n }\n}":      "role",
	} {
		a := new(App)
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(cf))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", cf, err, want)
		}
	}
}
