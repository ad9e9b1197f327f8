package identity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_identity {\n  color x\n }\n}", `unknown subdirective "color"`)
	adapttest.ExpectError(t, ":9000 {\n neo_identity {\n  tenant a\n  tenant b\n }\n}", `neo_identity: duplicate subdirective "tenant"`)
}

func TestValidate(t *testing.T) {
	b := Binding{}
	b.Provision(caddy.Context{Context: context.Background()})
	b.RuntimeRole = "{stage}/user"
	if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "runtime_role") {
		t.Fatalf("got %v", err)
	}
}

func TestBinding(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		tenant, stage, service, roles string
		want                          int
	}{
		{"acme user on acme dev", "acme", "dev", "", "acme/dev/user acme/prod/user", 200},
		{"acme user on globex dev", "globex", "dev", "", "acme/dev/user acme/prod/user", 403},
		{"acme dev user on acme prod", "acme", "prod", "", "acme/dev/user", 403},
		{"member on platform", "acme", "", "build", "acme/member", 200},
		{"end user on platform", "acme", "", "build", "acme/dev/user", 403},
		{"globex member on acme platform", "acme", "", "build", "globex/member", 403},
		{"prefix is not a role", "acme", "dev", "", "acme/dev/user2 xacme/dev/user", 403},
		{"no tenant", "", "dev", "", "acme/dev/user /dev/user", 403},
		{"no stage", "acme", "", "", "acme//user", 403},
		{"injected tenant", "acme/dev/user x", "dev", "", "acme/dev/user", 403},
		{"no roles", "acme", "dev", "", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Binding{}
			b.Provision(caddy.Context{Context: context.Background()})
			b.logger = zap.NewNop()
			repl := caddy.NewReplacer()
			repl.Set("neo.tenant", tc.tenant)
			repl.Set("neo.stage", tc.stage)
			repl.Set("neo.service", tc.service)
			repl.Set("http.auth.user.roles", tc.roles)
			r := httptest.NewRequest("GET", "/", nil)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			called := false
			err := b.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				called = true
				return nil
			}))
			got := 200
			if he, ok := err.(caddyhttp.HandlerError); ok {
				got = he.StatusCode
			}
			if got != tc.want || called != (tc.want == 200) {
				t.Fatalf("status %d (next called %v), want %d", got, called, tc.want)
			}
		})
	}
}

func FuzzRequired(f *testing.F) {
	f.Add("acme", "dev", "", "acme/dev/user")
	f.Add("acme", "", "build", "acme/member")
	f.Fuzz(func(t *testing.T, tenant, stage, service, roles string) {
		role, reason := Required("{tenant}/{stage}/user", "{tenant}/member", tenant, stage, service)
		if reason != "" {
			return
		}
		// A granted role always names exactly the request's tenant.
		if !strings.HasPrefix(role, tenant+"/") || strings.ContainsAny(role, " \t\n") {
			t.Fatalf("tenant %q got role %q", tenant, role)
		}
		if HasRole(roles, role) && !strings.Contains(" "+roles+" ", " "+role+" ") && !strings.Contains(roles, role) {
			t.Fatalf("HasRole(%q, %q) without the role", roles, role)
		}
	})
}
