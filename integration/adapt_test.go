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
// testdata/golden/ (rewrite with -update after a deliberate change).
func TestCaddyfilesAdapt(t *testing.T) {
	root := harness.RepoRoot()
	files, err := filepath.Glob(filepath.Join(root, "caddyfiles", "*.Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Caddyfiles found: %v", err)
	}
	// the three-zone deployment's roles: caddyfiles/zones/x.Caddyfile,
	// golden testdata/golden/zones/x.json
	zones, err := filepath.Glob(filepath.Join(root, "caddyfiles", "zones", "*.Caddyfile"))
	if err != nil || len(zones) == 0 {
		t.Fatalf("no zone Caddyfiles found: %v", err)
	}
	for _, f := range append(files, zones...) {
		rel, _ := filepath.Rel(filepath.Join(root, "caddyfiles"), f)
		name := strings.TrimSuffix(rel, ".Caddyfile")
		t.Run(rel, func(t *testing.T) {
			adapttest.File(t, f, filepath.Join("testdata", "golden", name+".json"))
		})
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
// caddyfiles/tenants/, imported into a minimal neo option as the role
// Caddyfiles import them (golden JSON in testdata/golden/tenants/).
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
			wrapper := filepath.Join(dir, "Caddyfile")
			body := "{\n\tneo {\n\t\tzone az-a\n\t\timport " + f + "\n\t}\n}\n"
			if err := os.WriteFile(wrapper, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			adapttest.File(t, wrapper, filepath.Join("testdata", "golden", "tenants", name+".json"))
		})
	}
}
