package secrets

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	t.Setenv("NEO_TEST_SECRET", "s3cr3t-value")
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"unknown":  {"{\n neo_secrets {\n  colour X\n }\n}\n:80", `unknown subdirective "colour"`},
		"no name":  {"{\n neo_secrets {\n  require\n }\n}\n:80", "wrong argument count"},
		"too many": {"{\n neo_secrets {\n  require A b c\n }\n}\n:80", "wrong argument count"},
		"bad name": {"{\n neo_secrets {\n  require A-B x\n }\n}\n:80", `"A-B" is not a variable name`},
		"twice":    {"{\n neo_secrets {\n  require A x\n }\n neo_secrets {\n  require A y\n }\n}\n:80", "A is required twice"},
		"arg":      {"{\n neo_secrets x {\n }\n}\n:80", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}

// provision provisions the app adapted from a Caddyfile, as a config load would.
func provision(t *testing.T, caddyfile string) error {
	t.Helper()
	js, err := adapttest.Adapt(t, "Caddyfile", []byte(caddyfile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	a := new(App)
	if err := json.Unmarshal(cfg.Apps["neo_secrets"], a); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), os.Getenv("NEO_TEST_SECRET")+`"`) && os.Getenv("NEO_TEST_SECRET") != "" {
		t.Fatalf("the secret's value is in the config: %s", js)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	return a.Provision(ctx)
}

// TestRefusesMissingOrDefault: a secret that is unset, empty or a known
// default is refused, naming its variable; a secret of one's own passes.
func TestRefusesMissingOrDefault(t *testing.T) {
	const cf = "{\n neo_secrets {\n  require NEO_TEST_SECRET \"{$NEO_TEST_SECRET}\"\n  require NEO_TEST_RUNTIME {env.NEO_TEST_RUNTIME}\n }\n}\n:80"
	for name, tc := range map[string]struct {
		adapted, runtime string
		want             string // "" = accepted
	}{
		"both set":          {"s3cr3t-value", "other-s3cret", ""},
		"adapted unset":     {"", "other-s3cret", "NEO_TEST_SECRET: not set"},
		"runtime unset":     {"s3cr3t-value", "", "NEO_TEST_RUNTIME: not set"},
		"both unset":        {"", "", "NEO_TEST_SECRET: not set: set it in the environment where the config is adapted"},
		"demo password":     {"neo-demo-password", "other-s3cret", "NEO_TEST_SECRET: is a publicly known default"},
		"local signing key": {"local-topology-only-signing-key-change-me", "x-s3cret", "NEO_TEST_SECRET: is a publicly known default"},
		"placeholder":       {"s3cr3t-value", "change-me", "NEO_TEST_RUNTIME: is a publicly known default"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("NEO_TEST_SECRET", tc.adapted)
			t.Setenv("NEO_TEST_RUNTIME", tc.runtime)
			err := provision(t, cf)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.want == "both unset" && !strings.Contains(err.Error(), "NEO_TEST_RUNTIME") {
				t.Fatalf("error %v names only one of the two missing secrets", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for name, a := range map[string]App{
		"name":   {Required: []Secret{{Name: "a b"}}},
		"twice":  {Required: []Secret{{Name: "A"}, {Name: "A"}}},
		"sha256": {Required: []Secret{{Name: "A", SHA256: "abc"}}},
		"env":    {Required: []Secret{{Name: "A", Env: "B C"}}},
	} {
		if err := a.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestKnownDefaultsCoverShippedFiles: every default that a file in
// caddyfiles/ gives a variable some role requires (`{$NEO_NATS_EDGE_PASSWORD:...}`) is
// a known default, so a production role never runs on it.
func TestKnownDefaultsCoverShippedFiles(t *testing.T) {
	root := filepath.Join("..", "..", "caddyfiles")
	required := map[string]bool{}
	defaults := map[string][]string{}
	reqRe := regexp.MustCompile(`(?m)^\s*require\s+([A-Za-z_][A-Za-z0-9_]*)`)
	defRe := regexp.MustCompile(`\{\$([A-Za-z_][A-Za-z0-9_]*):([^}]*)\}`)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range reqRe.FindAllStringSubmatch(string(data), -1) {
			required[m[1]] = true
		}
		for _, m := range defRe.FindAllStringSubmatch(string(data), -1) {
			defaults[m[1]] = append(defaults[m[1]], m[2])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(required) == 0 {
		t.Fatal("no role requires a secret")
	}
	for name := range required {
		for _, v := range defaults[name] {
			if !slices.Contains(KnownDefaults, v) {
				t.Errorf("%s has the default %q in caddyfiles/, which KnownDefaults lacks", name, v)
			}
		}
	}
}
