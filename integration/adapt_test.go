package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/adapttest"

	// The module set of cmd/caddy, so every directive adapts in-process.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/corazawaf/coraza-caddy/v2"
	_ "github.com/greenpau/caddy-security"
	_ "github.com/mholt/caddy-ratelimit"
	_ "github.com/projectneo/caddy-neo/modules/all"
)

// TestCaddyfilesAdapt is the golden adapt test of every role Caddyfile in
// caddyfiles/: each must adapt, and to exactly its golden JSON in
// testdata/golden/ (rewrite with -update after a deliberate change). The
// zones of the three-zone deployment differ only by their env files:
// every role adapts with each zone's env file, and the edge and the stage
// gateway of zone az-b have goldens (testdata/golden/zones/az-b-*.json).
func TestCaddyfilesAdapt(t *testing.T) {
	root := harness.RepoRoot()
	files, err := filepath.Glob(filepath.Join(root, "caddyfiles", "*.Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Caddyfiles found: %v", err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(root, "caddyfiles"), f)
		name := strings.TrimSuffix(rel, ".Caddyfile")
		t.Run(rel, func(t *testing.T) {
			adapttest.File(t, f, filepath.Join("testdata", "golden", name+".json"))
		})
	}
	envs, err := filepath.Glob(filepath.Join(root, "caddyfiles", "zones", "*.env"))
	if err != nil || len(envs) != 3 {
		t.Fatalf("want the env files of three zones, found %v (%v)", envs, err)
	}
	for _, env := range envs {
		zone := strings.TrimSuffix(filepath.Base(env), ".env")
		for _, f := range files {
			role := strings.TrimSuffix(filepath.Base(f), ".Caddyfile")
			if role == "local" {
				continue
			}
			t.Run("zones/"+zone+"/"+role, func(t *testing.T) {
				vars := harness.EnvFile(t, env)
				for k, v := range vars {
					t.Setenv(k, v)
				}
				if zone == "az-b" && (role == "edge" || role == "stage") {
					adapttest.File(t, f, filepath.Join("testdata", "golden", "zones", zone+"-"+role+".json"))
					return
				}
				body, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				out, err := adapttest.Adapt(t, f, body)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(out), `"zone": "`+vars["NEO_ZONE"]+`"`) {
					t.Fatalf("%s with %s: the node is not in zone %s", role, zone, vars["NEO_ZONE"])
				}
			})
		}
	}
}

// TestBinaryModules checks that the built binary carries our modules and the
// third-party plugins, and adapts the local topology.
func TestBinaryModules(t *testing.T) {
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	mods := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		mods[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{"http.handlers.neo_echo", "http.handlers.waf", "http.handlers.rate_limit", "security", "http.handlers.reverse_proxy",
		"http.handlers.neo_waf", "http.handlers.neo_identity", "http.handlers.neo_login_user", "http.handlers.neo_egress",
		"neo_nats", "http.reverse_proxy.transport.neo_nats", "neo_waf_accel"} {
		if !mods[want] {
			t.Errorf("list-modules lacks %s", want)
		}
	}
	cmd := exec.Command(bin, "adapt", "--config", "caddyfiles/local.Caddyfile")
	cmd.Dir = harness.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy adapt local.Caddyfile: %v\n%s", err, out)
	}
}

// TestTenantFilesAdapt is the golden adapt test of every per-tenant file in
// caddyfiles/tenants/, imported alone through caddyfiles/registry.caddy (its
// zones, stages and services) as the roles import it (NEO_TENANTS; golden
// JSON in testdata/golden/tenants/).
func TestTenantFilesAdapt(t *testing.T) {
	root := harness.RepoRoot()
	files, err := filepath.Glob(filepath.Join(root, "caddyfiles", "tenants", "*.caddy"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tenant files found: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".caddy")
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+".caddy"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("NEO_TENANTS", dir)
			wrapper := filepath.Join(dir, "Caddyfile")
			body := "{\n\tneo {\n\t\tzone az-a\n\t}\n\timport " + filepath.Join(root, "caddyfiles", "registry.caddy") + "\n}\n"
			if err := os.WriteFile(wrapper, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			adapttest.File(t, wrapper, filepath.Join("testdata", "golden", "tenants", name+".json"))
		})
	}
}
