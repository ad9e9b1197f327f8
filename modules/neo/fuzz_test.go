package neo

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// hostNames is the oracle for FuzzResolve: which tenant a normalised host
// names, computed from the demo configuration without the registry.
func hostNames(host string) (tenant string, stage string) {
	switch host {
	case "shop.acme.localhost":
		return "acme", "prod"
	}
	if l, ok := strings.CutSuffix(host, ".platform.localhost"); ok {
		return l, ""
	}
	if l, ok := strings.CutSuffix(host, ".apps.localhost"); ok {
		if t, ok := strings.CutSuffix(l, "-dev"); ok {
			return t, "dev"
		}
		return l, "prod"
	}
	return "", ""
}

func FuzzResolve(f *testing.F) {
	for _, s := range [][2]string{
		{"acme-dev.apps.localhost", "/orders/x"}, {"ACME.apps.localhost.:8443", "/orders/../ledger"},
		{"globex.platform.localhost", "/api/build/x"}, {"shop.acme.localhost", "/"}, {"acme-dev.apps.localhost", "/%2e%2e/billing"},
		{"globex-dev-dev.apps.localhost", "//billing"}, {"x", "\\"},
	} {
		f.Add(s[0], s[1])
	}
	a := newTestApp(f, demoTenants())
	h := &RouteHandler{app: a, logger: a.logger}
	f.Fuzz(func(t *testing.T, host, target string) {
		if n, ok := NormalizeHost(host); ok {
			if n != strings.ToLower(n) || strings.HasSuffix(n, ".") || strings.Contains(n, ":") {
				t.Fatalf("NormalizeHost(%q) = %q", host, n)
			}
			if res, miss := a.reg.Snapshot().Resolve(n, cleanPath("/"+strings.TrimPrefix(target, "/"))); miss == "" {
				tn, st := hostNames(n)
				if res.Tenant.Name != tn || res.Stage != st {
					t.Fatalf("%q resolved to %s/%s, host names %s/%s", n, res.Tenant.Name, res.Stage, tn, st)
				}
			}
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		rt, r, err, _ := serve(t, h, host, target, http.Header{"Neo-Tenant": {"globex"}})
		if err != nil || rt == nil {
			return
		}
		n, _ := NormalizeHost(host)
		tn, st := hostNames(n)
		if rt.Tenant != tn || rt.Stage != st || r.Header.Get("Neo-Tenant") != tn || len(r.Header["Neo-Tenant"]) != 1 {
			t.Fatalf("%q %q resolved to %+v (Neo-Tenant %v), host names %s/%s", host, target, rt, r.Header["Neo-Tenant"], tn, st)
		}
		// The forwarded path, as the upstream will decode it, names the
		// resolved app (or lies under the service's prefix).
		fwd, err := url.PathUnescape(r.URL.EscapedPath())
		if err != nil || fwd != r.URL.Path || cleanPath(fwd) != fwd {
			t.Fatalf("forwarded path %q (escaped %q) not canonical", r.URL.Path, r.URL.EscapedPath())
		}
		if rt.App != "" && !(fwd == "/"+rt.App || strings.HasPrefix(fwd, "/"+rt.App+"/")) {
			t.Fatalf("forwarded path %q for app %s", fwd, rt.App)
		}
		if rt.Service != "" {
			sv := a.g.serviceByName[rt.Service]
			if !strings.HasPrefix(fwd+"/", sv.Path) {
				t.Fatalf("forwarded path %q for service %s (%s)", fwd, rt.Service, sv.Path)
			}
		}
	})
}

func FuzzAdminBody(f *testing.F) {
	for _, s := range []string{
		`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"127.0.0.1:9900","zone":"az-a"}]}}}}}`,
		`{"apps":{"crm":{}},"domains":{"crm.example.com":{"stage":"prod","default_app":"crm"}}}`,
		`{"apps":{"crm":null}}`, `{"apps":[]}`, `{"colour":1}`, `{}`, `null`, `[]`, `{"apps":{"crm":{}}} {}`,
		`[{"address":"127.0.0.1:1"}]`, `{"stage":"dev"}`,
		`[{"address":"127.0.0.1:1","zone":"az-bb"}]`, `[{"address":"127.0.0.1:1","zone":"az-a"},{"address":"127.0.0.1:1","zone":"az-b"}]`,
		`{"identity":{"stages":{"dev":{"users":{"dana":{"password_hash":"$2a$04$abcdefghijklmnopqrstuuM5ON9gq9cz4EGqOGMd/NKtv0HqyD8Ry"}}}}}}`,
		`{"stages":{"dev":{"providers":{"corp":{"issuer":"https://login.example.com","client_id":"c"}}}}}`,
		`{"password_hash":"$2a$04$abcdefghijklmnopqrstuuM5ON9gq9cz4EGqOGMd/NKtv0HqyD8Ry","roles":["r"]}`,
		`{"name":"ci","realm":"dev"}`, `{"clients":{"neo_0123456789abcdef":{"secret_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}}}`,
		`{"waf":{"paranoia":2,"exclusions":[{"rules":["942100","941100-941199"],"tags":["attack-rce"],"path":"/crm/api/*","args":["json.body","REQUEST_COOKIES:x"]}]}}`,
		`{"waf":{"exclusions":[{"path":"/x"}]}}`, `{"waf":{"exclusions":[{"rules":["0"]}]}}`,
	} {
		f.Add(s)
	}
	plain := newTestApp(f, demoTenants())
	// a registry with declared zones: replicas must name one of them
	zoned := newTestApp(f, demoTenants())
	if err := zoned.g.setZones([]string{"az-a", "az-b"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, a := range []*App{plain, zoned} {
			fuzzAdminBody(t, a, body)
		}
	})
}

func fuzzAdminBody(t *testing.T, a *App, body string) {
	for _, path := range [][]string{
		{"tenants", "initech"},
		{"tenants", "initech", "apps", "crm"},
		{"tenants", "initech", "apps", "crm", "stages", "dev", "replicas"},
		{"tenants", "initech", "domains", "crm.example.com"},
		{"tenants", "initech", "identity"},
		{"tenants", "initech", "identity", "stages", "dev", "users", "dana"},
		{"tenants", "initech", "identity", "clients"},
		{"tenants", "acme"},
	} {
		before := a.reg.Snapshot()
		st, _, err := a.handleAdmin(http.MethodPut, path, []byte(body))
		after := a.reg.Snapshot()
		if err != nil {
			if st < 400 || st >= 500 {
				t.Fatalf("PUT %v %q: status %d for %v", path, body, st, err)
			}
			if before != after {
				t.Fatalf("PUT %v %q failed (%v) but changed the registry", path, body, err)
			}
			continue
		}
		if path[1] == "acme" {
			t.Fatal("config tenant changed")
		}
		if _, ok := after.Tenant("initech"); !ok {
			t.Fatalf("PUT %v %q succeeded but initech is absent", path, body)
		}
		if acme, _ := after.Tenant("acme"); acme.Source != SourceConfig {
			t.Fatal("acme replaced")
		}
		// No read shows a secret.
		for _, get := range [][]string{{"tenants", "initech"}, {"tenants", "initech", "identity"}, {"tenants", "initech", "identity", "clients"}} {
			if _, v, err := a.handleAdmin(http.MethodGet, get, nil); err == nil {
				if out, _ := json.Marshal(v); strings.Contains(string(out), "_hash") || strings.Contains(string(out), `"password"`) {
					t.Fatalf("GET %v after PUT %v %q shows a secret: %s", get, path, body, out)
				}
			}
		}
		if a.g.zones != nil {
			t2, _ := after.Tenant("initech")
			for _, ac := range t2.Config.Apps {
				for _, sc := range ac.Stages {
					for _, r := range sc.Replicas {
						if !a.g.zones[r.Zone] {
							t.Fatalf("PUT %v %q accepted a replica in zone %q", path, body, r.Zone)
						}
					}
				}
			}
		}
	}
	_ = a.Delete("initech")
}
