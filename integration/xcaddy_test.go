package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// modules returns the "dep" lines of `go version -m bin`: module path → version.
func modules(t *testing.T, bin string) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
	}
	mods := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "dep" {
			mods[f[1]] = f[2]
		}
	}
	return mods
}

// TestXcaddyBuildMatchesGoBuild builds the binary the documented way, with
// xcaddy from xcaddy.json (go run ./cmd/neo-build), and checks that it holds
// the same modules at the same versions as `go build ./cmd/caddy`. It takes a
// few minutes, so it runs when NEO_XCADDY=1 (.ci/run sets it).
func TestXcaddyBuildMatchesGoBuild(t *testing.T) {
	if os.Getenv("NEO_XCADDY") != "1" {
		t.Skip("set NEO_XCADDY=1 to build with xcaddy (.ci/run does)")
	}
	goBin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	xBin := os.Getenv("NEO_XCADDY_BIN") // a binary neo-build made earlier, to compare again
	if xBin == "" {
		xBin = filepath.Join(t.TempDir(), "caddy-xcaddy")
		cmd := exec.Command("go", "run", "./cmd/neo-build", "-o", xBin)
		cmd.Dir = harness.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("neo-build: %v\n%s", err, out)
		}
	}
	want, got := modules(t, goBin), modules(t, xBin)
	for mod, v := range want {
		if mod == "github.com/projectneo/caddy-neo" {
			continue // the main module of one build, a replaced dependency of the other
		}
		if got[mod] != v {
			t.Errorf("module %s: go build has %s, xcaddy build has %q", mod, v, got[mod])
		}
	}
	for mod, v := range got {
		if _, ok := want[mod]; !ok && mod != "github.com/projectneo/caddy-neo" && !strings.HasPrefix(mod, "caddy") {
			t.Errorf("module %s %s: only in the xcaddy build", mod, v)
		}
	}
	out, err := exec.Command(xBin, "list-modules").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "http.handlers.neo_echo") || !strings.Contains(string(out), "http.handlers.waf") {
		t.Fatalf("xcaddy binary modules: %v\n%s", err, out)
	}
}
