package neo

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/projectneo/caddy-neo/internal/adapttest"
)

// registryHead is a registry as caddyfiles/registry.caddy declares it: the
// zones and stages before the tenants.
const registryHead = `{
	neo {
		zone az-a
		zones az-a az-b az-c
		stages dev prod
		import tenants/*.caddy
	}
}
:80
`

// TestCaddyfileMistakesNameFileAndLine: each likely mistake in a tenant file
// is refused when the Caddyfile is adapted, naming the tenant file, the line
// and the field, not a JSON path behind another module's message.
func TestCaddyfileMistakesNameFileAndLine(t *testing.T) {
	for name, tc := range map[string]struct {
		tenant string
		line   int
		want   string
	}{
		"replica without zone": {"tenant acme {\n\tapp orders {\n\t\tstage dev {\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t\treplica 10.0.0.2:80\n\t\t}\n\t}\n}\n", 5,
			`tenants.acme.apps.orders.stages.dev.replicas[1].zone: missing: name the replica's zone (az-a, az-b, az-c)`},
		"zone typo": {"tenant acme {\n\tapp orders {\n\t\tstage dev {\n\t\t\treplica 10.0.0.1:80 az-bb\n\t\t}\n\t}\n}\n", 4,
			`tenants.acme.apps.orders.stages.dev.replicas[0].zone: unknown zone "az-bb" (zones: az-a, az-b, az-c)`},
		"duplicate replica": {"tenant acme {\n\tapp orders {\n\t\tstage dev {\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t\treplica 10.0.0.2:80 az-b\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t}\n\t}\n}\n", 6,
			`tenants.acme.apps.orders.stages.dev.replicas[2].address: "10.0.0.1:80" is already tenants.acme.apps.orders.stages.dev.replicas[0]`},
		"unknown stage": {"tenant acme {\n\tapp orders {\n\t\tstage qa {\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t}\n\t}\n}\n", 3,
			`tenants.acme.apps.orders.stages.qa: unknown stage "qa" (stages: dev, prod)`},
		"unknown app": {"tenant acme {\n\tapp orders {\n\t\tstage prod {\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t}\n\t}\n\tdomain shop.acme.example prod {\n\t\tdefault_app shop\n\t}\n}\n", 7,
			`tenants.acme.domains.shop.acme.example.default_app: tenant has no app "shop"`},
		"domain stage": {"tenant acme {\n\tdomain shop.acme.example qa\n}\n", 2,
			`tenants.acme.domains.shop.acme.example.stage: unknown stage "qa"`},
		"reserved app name": {"tenant acme {\n\tapp identity {\n\t\tstage dev {\n\t\t\treplica 10.0.0.1:80 az-a\n\t\t}\n\t}\n}\n", 2,
			`tenants.acme.apps.identity: the app name "identity" is reserved`},
		"ambiguous tenants": {"tenant acme {\n}\ntenant acme-dev {\n}\n", 3,
			`tenants.acme-dev: ambiguous host names`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "tenants"), 0o755); err != nil {
				t.Fatal(err)
			}
			tenantFile := filepath.Join(dir, "tenants", "acme.caddy")
			if err := os.WriteFile(tenantFile, []byte(tc.tenant), 0o644); err != nil {
				t.Fatal(err)
			}
			main := filepath.Join(dir, "Caddyfile")
			_, err := adapttest.Adapt(t, main, []byte(registryHead))
			if err == nil {
				t.Fatal("adapted without error")
			}
			where := tenantFile + ":" + itoaTest(tc.line)
			if !strings.Contains(err.Error(), where) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to name %s and contain %q", err, where, tc.want)
			}
			if strings.Contains(err.Error(), "needs the neo app") {
				t.Fatalf("misleading chain: %v", err)
			}
		})
	}
}

func itoaTest(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

// TestCaddyfileZonesErrors: mistakes in the registry's own settings.
func TestCaddyfileZonesErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want, at string }{
		"node zone undeclared":    {"{\n neo {\n  zone az-d\n  zones az-a az-b\n }\n}\n:80", `neo: zone: "az-d" is not one of the registry's zones (az-a, az-b)`, "at Caddyfile:3"},
		"zone listed twice":       {"{\n neo {\n  zone az-a\n  zones az-a az-a\n }\n}\n:80", `neo: zones[1]: "az-a" is listed twice`, "at Caddyfile:4"},
		"zones twice":             {"{\n neo {\n  zones az-a\n  zones az-b\n }\n}\n:80", "zones given twice", "Caddyfile:4"},
		"zones without args":      {"{\n neo {\n  zones\n }\n}\n:80", "wrong argument count", "Caddyfile:3"},
		"zone order undeclared":   {"{\n neo {\n  zone az-a\n  zones az-a az-b\n  zone_order az-c\n }\n}\n:80", `neo: zone_order[0]: unknown zone "az-c"`, "at Caddyfile:5"},
		"service replica zone":    {"{\n neo {\n  zone az-a\n  zones az-a az-b\n  service build /b/ {\n   replica 10.0.0.1:80\n  }\n }\n}\n:80", `neo: services.build.replicas[0].zone: missing`, "at Caddyfile:6"},
		"service replica twice":   {"{\n neo {\n  zone az-a\n  service build /b/ {\n   replica 10.0.0.1:80\n   replica 10.0.0.1:80\n  }\n }\n}\n:80", `neo: services.build.replicas[1].address: "10.0.0.1:80" is already`, "at Caddyfile:6"},
		"duplicate without zones": {"{\n neo {\n  zone az-a\n  tenant acme {\n   app a {\n    stage dev {\n     replica 10.0.0.1:80\n     replica 10.0.0.1:80\n    }\n   }\n  }\n }\n}\n:80", `neo: tenants.acme.apps.a.stages.dev.replicas[1].address`, "at Caddyfile:8"},
	} {
		t.Run(name, func(t *testing.T) {
			adapttest.ExpectError(t, tc.in, tc.want)
			adapttest.ExpectError(t, tc.in, tc.at)
		})
	}
}

// TestAdminRefusesZoneMistakes: the admin API refuses the same mistakes with
// 400 naming the JSON field, and changes nothing.
func TestAdminRefusesZoneMistakes(t *testing.T) {
	a := newTestApp(t, demoTenants())
	if err := a.g.setZones([]string{"az-a", "az-b"}); err != nil {
		t.Fatal(err)
	}
	before := a.reg.Snapshot()
	for name, tc := range map[string]struct{ path, body, want string }{
		"no zone":   {"tenants/initech", `{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"10.0.0.1:80"}]}}}}}`, `tenants.initech.apps.crm.stages.prod.replicas[0].zone: missing`},
		"zone typo": {"tenants/initech", `{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"10.0.0.1:80","zone":"az-bb"}]}}}}}`, `tenants.initech.apps.crm.stages.prod.replicas[0].zone: unknown zone "az-bb" (zones: az-a, az-b)`},
		"duplicate": {"tenants/initech", `{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"10.0.0.1:80","zone":"az-a"},{"address":"10.0.0.1:80","zone":"az-b"}]}}}}}`, `tenants.initech.apps.crm.stages.prod.replicas[1].address: "10.0.0.1:80" is already`},
		"stage":     {"tenants/initech", `{"apps":{"crm":{"stages":{"qa":{}}}}}`, `tenants.initech.apps.crm.stages.qa: unknown stage "qa"`},
		"reserved":  {"tenants/initech", `{"apps":{"identity":{"stages":{"dev":{}}}}}`, `tenants.initech.apps.identity: the app name "identity" is reserved`},
		"protocol":  {"tenants/initech", `{"apps":{"crm":{"protocol":"grpc"}}}`, `tenants.initech.apps.crm.protocol: must be h1 or h2c, got "grpc"`},
	} {
		t.Run(name, func(t *testing.T) {
			status, _, err := a.handleAdmin(http.MethodPut, strings.Split(tc.path, "/"), []byte(tc.body))
			if status != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("status %d, error %v; want 400 containing %q", status, err, tc.want)
			}
			if a.reg.Snapshot() != before {
				t.Fatal("a refused change was published")
			}
		})
	}
}

func TestRingOrder(t *testing.T) {
	zones := []string{"az-a", "az-b", "az-c"}
	for zone, want := range map[string]string{"az-a": "az-b az-c", "az-b": "az-c az-a", "az-c": "az-a az-b", "az-x": ""} {
		if got := strings.Join(ringOrder(zones, zone), " "); got != want {
			t.Errorf("%s: %q, want %q", zone, got, want)
		}
	}
}

// TestJSONConfigErrorNamesField: a JSON config whose neo app is invalid is
// refused with the app's own error naming the field, not behind the module
// that needed the app ("tls.permission.neo needs the neo app: ...").
func TestJSONConfigErrorNamesField(t *testing.T) {
	cfg := `{
	"apps": {
		"neo": {"zone": "az-a", "zones": ["az-a", "az-b"], "tenants": {"acme": {"apps": {"orders": {"stages": {"prod": {"replicas": [{"address": "10.0.0.1:80", "zone": "az-bb"}]}}}}}}},
		"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{"handler": "neo_route"}]}]}}}
	}
}`
	var c caddy.Config
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		t.Fatal(err)
	}
	err := caddy.Validate(&c)
	if err == nil || !strings.Contains(err.Error(), `tenants.acme.apps.orders.stages.prod.replicas[0].zone: unknown zone "az-bb"`) {
		t.Fatalf("error %v: want it to name the field", err)
	}
	if strings.Contains(err.Error(), "needs the neo app") {
		t.Fatalf("misleading chain: %v", err)
	}
}
