package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the repository holding this package.
const repoRoot = "../.."

// TestRepositoryAgrees is the guard: xcaddy.json, go.mod, cmd/caddy/main.go and
// the Dockerfile of this repository must agree.
func TestRepositoryAgrees(t *testing.T) {
	m, err := Load(filepath.Join(repoRoot, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Check(repoRoot) {
		t.Error(e)
	}
}

// copyRepo copies the files Check reads into a temporary directory.
func copyRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"xcaddy.json", "go.mod", "Dockerfile", ".dockerignore", "cmd/caddy/main.go"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func edit(t *testing.T, dir, file, old, new string) {
	t.Helper()
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDisagreementsAreCaught mutates one file at a time and expects Check to
// name the disagreement.
func TestDisagreementsAreCaught(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"plugin missing from main.go", "cmd/caddy/main.go", `_ "github.com/mholt/caddy-ratelimit"`, ``, "github.com/mholt/caddy-ratelimit: in xcaddy.json but not imported"},
		{"plugin only in main.go", "cmd/caddy/main.go", `_ "github.com/mholt/caddy-ratelimit"`, `_ "github.com/mholt/caddy-ratelimit"
	_ "github.com/example/extra"`, "github.com/example/extra: imported by cmd/caddy/main.go but not in xcaddy.json"},
		{"plugin version differs from go.mod", "xcaddy.json", `"version": "v1.1.64"`, `"version": "v1.1.63"`, "xcaddy.json has v1.1.63, go.mod has github.com/greenpau/caddy-security v1.1.64"},
		{"plugin missing from xcaddy.json", "xcaddy.json", `{"module_path": "github.com/mholt/caddy-ratelimit", "version": "v0.1.0"},`, ``, "github.com/mholt/caddy-ratelimit: imported by cmd/caddy/main.go but not in xcaddy.json"},
		{"caddy version differs", "go.mod", "github.com/caddyserver/caddy/v2 v2.11.9", "github.com/caddyserver/caddy/v2 v2.11.8", "caddy version: xcaddy.json has v2.11.9"},
		{"pin differs", "go.mod", "github.com/corazawaf/coraza/v3 v3.8.1", "github.com/corazawaf/coraza/v3 v3.7.0", "pin github.com/corazawaf/coraza/v3"},
		{"plugin missing from go.mod", "go.mod", "github.com/mholt/caddy-ratelimit v0.1.0", "", "github.com/mholt/caddy-ratelimit: in xcaddy.json but not required by go.mod"},
		{"docker builder unpinned", "Dockerfile", "FROM caddy:2.11.9-builder", "FROM caddy:builder", "Dockerfile: FROM"},
		{"docker latest", "Dockerfile", "FROM caddy:2.11.9\n", "FROM caddy:latest\n", "never latest"},
		{"docker version differs", "Dockerfile", "FROM caddy:2.11.9\n", "FROM caddy:2.11.8\n", "Dockerfile: FROM"},
		{"docker gonosumdb", "Dockerfile", ",github.com/mholt/caddy-ratelimit\n", "\n", "GONOSUMDB"},
		{"docker root", "Dockerfile", "USER 10001:10001", "USER root", "non-root"},
		{"docker root uid", "Dockerfile", "USER 10001:10001", "USER 0:0", "non-root"},
		{"docker no healthcheck", "Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"},
		{"docker data outside volumes", "Dockerfile", `VOLUME ["/data", "/config"]`, `VOLUME ["/config"]`, "XDG_DATA_HOME"},
		{"docker tmp outside volumes", "Dockerfile", "TMPDIR=/data/tmp", "TMPDIR=/tmp", "TMPDIR"},
		{"docker shell-form cmd", "Dockerfile", `CMD ["caddy", "run"`, `CMD caddy run #`, "exec form"},
		{"docker no udp", "Dockerfile", "EXPOSE 80 443 443/udp", "EXPOSE 80 443", "443/udp missing"},
		{"docker own plugin list", "Dockerfile", "-o /usr/bin/caddy", "-o /usr/bin/caddy --with github.com/example/x", "--with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyRepo(t)
			edit(t, dir, tc.file, tc.old, tc.new)
			m, err := Load(filepath.Join(dir, "xcaddy.json"))
			if err != nil {
				t.Fatal(err)
			}
			errs := m.Check(dir)
			for _, e := range errs {
				if strings.Contains(e.Error(), tc.want) {
					return
				}
			}
			t.Fatalf("want an error containing %q, got %v", tc.want, errs)
		})
	}
}

func TestParseRejectsBadManifests(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"unknown field":     {`{"caddy_version":"v2.11.9","plugin":[]}`, `unknown field "plugin"`},
		"bad caddy version": {`{"caddy_version":"latest"}`, "caddy_version"},
		"plugin no version": {`{"caddy_version":"v2.11.9","plugins":[{"module_path":"a.b/c"}]}`, "plugins[0].version"},
		"plugin twice":      {`{"caddy_version":"v2.11.9","plugins":[{"module_path":"a.b/c","version":"v1.0.0"},{"module_path":"a.b/c","version":"v1.0.0"}]}`, "listed twice"},
		"local and version": {`{"caddy_version":"v2.11.9","plugins":[{"module_path":"a.b/c","version":"v1.0.0","local":"."}]}`, "not both"},
		"pin no version":    {`{"caddy_version":"v2.11.9","pins":[{"module_path":"a.b/c"}]}`, "pins[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json), ".")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestBuilderUsesManifest(t *testing.T) {
	m, err := Load(filepath.Join(repoRoot, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Builder()
	if err != nil {
		t.Fatal(err)
	}
	if b.CaddyVersion != "v2.11.9" {
		t.Errorf("caddy version %q", b.CaddyVersion)
	}
	if len(b.Plugins) != len(m.Plugins) {
		t.Errorf("plugins %v", b.Plugins)
	}
	if len(b.Replacements) != 1 || b.Replacements[0].Old.String() != ModulePath {
		t.Errorf("replacements %v", b.Replacements)
	}
}

// TestDockerignoreRequired: a Dockerfile without a .dockerignore beside it
// is a disagreement.
func TestDockerignoreRequired(t *testing.T) {
	dir := copyRepo(t)
	if err := os.Remove(filepath.Join(dir, ".dockerignore")); err != nil {
		t.Fatal(err)
	}
	m, err := Load(filepath.Join(dir, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Check(dir) {
		if strings.Contains(e.Error(), ".dockerignore") {
			return
		}
	}
	t.Fatal("no error names the missing .dockerignore")
}

// TestParseDockerfileImage reads the image stage of this repository's
// Dockerfile as the image test uses it.
func TestParseDockerfileImage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := ParseDockerfile(data)
	if err != nil {
		t.Fatal(err)
	}
	img := df.Image()
	if len(df.Stages) != 2 || df.Stages[0].Name != "builder" || img.From != "caddy:2.11.9" {
		t.Fatalf("stages %+v", df.Stages)
	}
	if img.User != "10001:10001" || img.Workdir != "/etc/caddy" || strings.Join(img.Volumes, " ") != "/data /config" ||
		img.Cmd[0] != "caddy" || img.Healthcheck[0] != "caddy" || len(img.Copies) != 2 || img.Copies[0].From != "builder" {
		t.Fatalf("image %+v", img)
	}
}
