package all

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// registry is the tenant registry's package: it registers neo_route, the
// admin API, the upstreams and a dozen more modules.
const registry = modulePath + "modules/neo"

// TestNATSLayersLinkNoRegistry: the NATS connection package, the
// certificate storage and the leaf route package never link the tenant
// registry, directly or through another package; nor does the connection
// package link the HTTP-over-NATS package.
func TestNATSLayersLinkNoRegistry(t *testing.T) {
	for pkg, forbidden := range map[string][]string{
		modulePath + "modules/natsconn":    {registry, modulePath + "modules/natshttp"},
		modulePath + "modules/natsstorage": {registry, modulePath + "modules/natshttp"},
		modulePath + "internal/route":      {registry, modulePath + "modules/natsconn", modulePath + "modules/natshttp"},
		modulePath + "modules/natshttp":    {registry},
	} {
		deps := goListDeps(t, pkg)
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s: %d packages: the listing is broken", pkg, len(deps))
		}
		for _, f := range forbidden {
			if slices.Contains(deps, f) {
				t.Errorf("%s links %s", pkg, f)
			}
		}
	}
}

func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// TestStorageLinksAlone: a Caddy build that imports only the NATS
// certificate storage registers, of caddy-neo's modules, the storage, the
// neo_nats connection app it uses, and neo_secrets (the connection app
// loads it first, so a credential's missing variable is reported by name).
// The program it builds is testdata/storageonly.
func TestStorageLinksAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and links a Caddy program")
	}
	out, err := exec.Command("go", "run", "./testdata/storageonly").CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./testdata/storageonly: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	if want := []string{"caddy.storage.neo_nats", "neo_nats", "neo_secrets"}; !slices.Equal(got, want) {
		t.Fatalf("importing modules/natsstorage registers %q, want %q", got, want)
	}
}
