// Package adapttest runs golden adapt tests: a Caddyfile is adapted to JSON and
// compared with the JSON it must produce.
//
// Two layouts are supported:
//   - directive tests: files `*.caddyfiletest` holding a Caddyfile, a line of
//     ten dashes (`----------`), then the expected JSON (Caddy's caddytest format);
//   - role files: a Caddyfile on disk and a golden JSON file beside the test.
//
// Run `go test ... -update` to rewrite the golden JSON after a deliberate change;
// review the diff before committing it.
package adapttest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the caddyfile adapter
)

// Update rewrites golden files instead of comparing with them.
var Update = flag.Bool("update", false, "rewrite golden adapt files")

const separator = "----------"

// Adapt adapts a Caddyfile whose imports are resolved relative to filename.
// Warnings are returned as test log lines.
func Adapt(t testing.TB, filename string, body []byte) ([]byte, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt(body, map[string]any{"filename": filename})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		t.Logf("warning: %s:%d: %s: %s", w.File, w.Line, w.Directive, w.Message)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RunDir runs every `*.caddyfiletest` file in dir as a subtest.
func RunDir(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.caddyfiletest files in %s", dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(data), "\n"+separator+"\n")
			if !ok {
				t.Fatalf("%s: no %s line between the Caddyfile and the JSON", f, separator)
			}
			got, err := Adapt(t, f, []byte(caddyfile+"\n"))
			if err != nil {
				t.Fatalf("adapting %s: %v", f, err)
			}
			if *Update {
				if err := os.WriteFile(f, []byte(caddyfile+"\n"+separator+"\n"+string(got)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			compare(t, f, got, []byte(want))
		})
	}
}

// File adapts the Caddyfile at path and compares it with the JSON at golden.
func File(t *testing.T, path, golden string) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Adapt(t, path, body)
	if err != nil {
		t.Fatalf("adapting %s: %v", path, err)
	}
	if *Update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	compare(t, path, got, want)
}

// ExpectError adapts a Caddyfile and expects an error containing want.
func ExpectError(t *testing.T, caddyfile, want string) {
	t.Helper()
	_, err := Adapt(t, "Caddyfile", []byte(caddyfile))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want an adapt error containing %q, got %v", want, err)
	}
}

func compare(t *testing.T, name string, got, want []byte) {
	t.Helper()
	g := strings.Split(strings.TrimSpace(string(got)), "\n")
	w := strings.Split(strings.TrimSpace(string(want)), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s: adapted JSON differs from golden at line %d:\n  want: %s\n  got:  %s\n(run with -update after a deliberate change)", name, i+1, wl, gl)
		}
	}
}
