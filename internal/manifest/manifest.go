// Package manifest reads xcaddy.json, the build manifest of caddy-neo, turns it
// into an xcaddy build, and checks that go.mod, cmd/caddy and the Dockerfile
// agree with it.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/xcaddy"
	"golang.org/x/mod/modfile"
)

// ModulePath is the Go module path of this repository.
const ModulePath = "github.com/projectneo/caddy-neo"

// LocalVersion is the version a local plugin is required at in the xcaddy
// build; a replace directive points it at the local directory.
const LocalVersion = "v0.0.0-00010101000000-000000000000"

// Plugin is one package compiled into the binary with a blank import.
type Plugin struct {
	// Package (import) path of the plugin.
	ModulePath string `json:"module_path"`
	// Version of the Go module holding the package; empty for a local plugin.
	Version string `json:"version,omitempty"`
	// Local is the directory, relative to xcaddy.json, holding the module of a
	// local plugin (this repository).
	Local string `json:"local,omitempty"`
}

// Pin is a module version the build must resolve to, without an import of its own.
type Pin struct {
	ModulePath string `json:"module_path"`
	Version    string `json:"version"`
}

// Manifest is the content of xcaddy.json.
type Manifest struct {
	CaddyVersion string `json:"caddy_version"`
	GONOSUMDB    string `json:"gonosumdb"`
	// BuildFlags are passed to the go commands xcaddy runs. When empty, xcaddy
	// adds its own defaults, among them the tags nobadger,nomysql,nopgx, and the
	// binary would lack modules that `go build ./cmd/caddy` links.
	BuildFlags string   `json:"build_flags"`
	Plugins    []Plugin `json:"plugins"`
	Pins       []Pin    `json:"pins"`

	dir string
}

var semver = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// Load reads and validates the manifest at path.
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, filepath.Dir(path))
}

// Parse decodes and validates a manifest; dir is the directory local plugin
// paths are relative to.
func Parse(data []byte, dir string) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("xcaddy.json: %w", err)
	}
	m.dir = dir
	return &m, m.validate()
}

func (m *Manifest) validate() error {
	if !semver.MatchString(m.CaddyVersion) {
		return fmt.Errorf("xcaddy.json: caddy_version: want a semantic version like v2.11.9, got %q", m.CaddyVersion)
	}
	seen := map[string]bool{}
	for i, p := range m.Plugins {
		if p.ModulePath == "" {
			return fmt.Errorf("xcaddy.json: plugins[%d].module_path: required", i)
		}
		if seen[p.ModulePath] {
			return fmt.Errorf("xcaddy.json: plugins[%d].module_path: %q listed twice", i, p.ModulePath)
		}
		seen[p.ModulePath] = true
		switch {
		case p.Local != "" && p.Version != "":
			return fmt.Errorf("xcaddy.json: plugins[%d] (%s): give version or local, not both", i, p.ModulePath)
		case p.Local == "" && !semver.MatchString(p.Version):
			return fmt.Errorf("xcaddy.json: plugins[%d].version (%s): want a semantic version, got %q", i, p.ModulePath, p.Version)
		}
	}
	for i, p := range m.Pins {
		if p.ModulePath == "" || !semver.MatchString(p.Version) {
			return fmt.Errorf("xcaddy.json: pins[%d]: want module_path and a semantic version, got %q %q", i, p.ModulePath, p.Version)
		}
	}
	return nil
}

// ModuleOf returns the module path of a plugin package, as listed in go.mod:
// the longest module path in mods that is a prefix of the package path.
func ModuleOf(pkg string, mods map[string]string) string {
	best := ""
	for mod := range mods {
		if (pkg == mod || strings.HasPrefix(pkg, mod+"/")) && len(mod) > len(best) {
			best = mod
		}
	}
	return best
}

// Builder returns the xcaddy build the manifest describes.
func (m *Manifest) Builder() (xcaddy.Builder, error) {
	b := xcaddy.Builder{CaddyVersion: m.CaddyVersion, BuildFlags: m.BuildFlags}
	for _, p := range m.Plugins {
		if p.Local != "" {
			dir, err := filepath.Abs(filepath.Join(m.dir, p.Local))
			if err != nil {
				return b, err
			}
			// The zero pseudo-version: the replacement below supplies the code,
			// and the go command need not ask the module proxy for a version
			// of this module (which it does not serve).
			b.Plugins = append(b.Plugins, xcaddy.Dependency{PackagePath: p.ModulePath, Version: LocalVersion})
			b.Replacements = append(b.Replacements, xcaddy.NewReplace(ModulePath, dir))
			continue
		}
		b.Plugins = append(b.Plugins, xcaddy.Dependency{PackagePath: p.ModulePath, Version: p.Version})
	}
	return b, nil
}

// Check compares the manifest with go.mod, cmd/caddy/main.go and the
// Dockerfile under root, and returns every disagreement it finds.
func (m *Manifest) Check(root string) []error {
	var errs []error
	mods, err := goModRequires(filepath.Join(root, "go.mod"))
	if err != nil {
		return []error{err}
	}
	imports, err := mainImports(filepath.Join(root, "cmd", "caddy", "main.go"))
	if err != nil {
		return []error{err}
	}
	if v := mods["github.com/caddyserver/caddy/v2"]; v != m.CaddyVersion {
		errs = append(errs, fmt.Errorf("caddy version: xcaddy.json has %s, go.mod has %q", m.CaddyVersion, v))
	}
	listed := map[string]bool{}
	for _, p := range m.Plugins {
		listed[p.ModulePath] = true
		if !imports[p.ModulePath] {
			errs = append(errs, fmt.Errorf("plugin %s: in xcaddy.json but not imported by cmd/caddy/main.go", p.ModulePath))
		}
		if p.Local != "" {
			if !strings.HasPrefix(p.ModulePath, ModulePath) {
				errs = append(errs, fmt.Errorf("plugin %s: local plugins must be packages of %s", p.ModulePath, ModulePath))
			}
			continue
		}
		mod := ModuleOf(p.ModulePath, mods)
		if mod == "" {
			errs = append(errs, fmt.Errorf("plugin %s: in xcaddy.json but not required by go.mod", p.ModulePath))
		} else if mods[mod] != p.Version {
			errs = append(errs, fmt.Errorf("plugin %s: xcaddy.json has %s, go.mod has %s %s", p.ModulePath, p.Version, mod, mods[mod]))
		}
	}
	for _, p := range m.Pins {
		if v, ok := mods[p.ModulePath]; !ok {
			errs = append(errs, fmt.Errorf("pin %s: in xcaddy.json but not required by go.mod", p.ModulePath))
		} else if v != p.Version {
			errs = append(errs, fmt.Errorf("pin %s: xcaddy.json has %s, go.mod has %s", p.ModulePath, p.Version, v))
		}
	}
	var extra []string
	for imp := range imports {
		if strings.HasPrefix(imp, "github.com/caddyserver/caddy/v2") || !strings.Contains(imp, ".") {
			continue // Caddy itself and the standard library
		}
		if !listed[imp] {
			extra = append(extra, imp)
		}
	}
	sort.Strings(extra)
	for _, imp := range extra {
		errs = append(errs, fmt.Errorf("plugin %s: imported by cmd/caddy/main.go but not in xcaddy.json", imp))
	}
	errs = append(errs, m.checkDockerfile(filepath.Join(root, "Dockerfile"))...)
	return errs
}

func goModRequires(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range f.Require {
		out[r.Mod.Path] = r.Mod.Version
	}
	for _, r := range f.Replace {
		return nil, fmt.Errorf("go.mod: replace %s: the build must use the published modules xcaddy.json lists", r.Old.Path)
	}
	return out, nil
}

// mainImports returns the packages main.go blank-imports: the plugins.
func mainImports(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, imp := range f.Imports {
		if imp.Name == nil || imp.Name.Name != "_" {
			continue // plugins are blank imports; others are main's own code
		}
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, err
		}
		out[p] = true
	}
	return out, nil
}

// Dockerfile is what Check needs to know about a Dockerfile, and what a
// test needs to lay out and run the image it builds (Stages).
type Dockerfile struct {
	From      []string // images of the FROM lines, in order
	Env       map[string]string
	User      string // the last USER
	Expose    []string
	Runs      []string
	CopyLines []string
	// Stages are the build stages in order; the last is the image.
	Stages []*Stage
}

// Stage is one build stage: a FROM line and the instructions up to the next.
type Stage struct {
	From, Name string
	// Env is the stage's ENV, in the order set (a later value wins).
	Env     [][2]string
	User    string
	Workdir string
	Volumes []string
	Copies  []Copy
	Runs    []string
	// Healthcheck and Cmd are the exec forms of HEALTHCHECK ... CMD and CMD.
	Healthcheck, Cmd []string
}

// Copy is a COPY instruction.
type Copy struct {
	From    string // --from=<stage>; empty: the build context
	Sources []string
	Dest    string
}

// Image returns the last stage, the image the Dockerfile builds.
func (df *Dockerfile) Image() *Stage {
	if len(df.Stages) == 0 {
		return nil
	}
	return df.Stages[len(df.Stages)-1]
}

// execForm parses the JSON array of an exec-form instruction.
func execForm(instr, rest string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(rest), &argv); err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("Dockerfile: %s %s: use the exec form [\"cmd\", \"arg\"...]", instr, rest)
	}
	return argv, nil
}

// ParseDockerfile reads the instructions Check looks at; continuation lines are joined.
func ParseDockerfile(data []byte) (*Dockerfile, error) {
	df := &Dockerfile{Env: map[string]string{}}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, errors.New("Dockerfile: ends inside a continued line")
	}
	var st *Stage
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		instr = strings.ToUpper(instr)
		if st == nil && instr != "FROM" && instr != "ARG" {
			return nil, fmt.Errorf("Dockerfile: %s before FROM", instr)
		}
		switch instr {
		case "FROM":
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, errors.New("Dockerfile: FROM without an image")
			}
			df.From = append(df.From, f[0])
			st = &Stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			df.Stages = append(df.Stages, st)
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("Dockerfile: ENV %q: use the KEY=value form", rest)
				}
				df.Env[k] = strings.Trim(v, `"`)
				st.Env = append(st.Env, [2]string{k, strings.Trim(v, `"`)})
			}
		case "USER":
			df.User = rest
			st.User = rest
		case "WORKDIR":
			st.Workdir = rest
		case "VOLUME":
			if strings.HasPrefix(rest, "[") {
				v, err := execForm(instr, rest)
				if err != nil {
					return nil, err
				}
				st.Volumes = append(st.Volumes, v...)
			} else {
				st.Volumes = append(st.Volumes, strings.Fields(rest)...)
			}
		case "EXPOSE":
			df.Expose = append(df.Expose, strings.Fields(rest)...)
		case "RUN":
			df.Runs = append(df.Runs, rest)
			st.Runs = append(st.Runs, rest)
		case "COPY":
			df.CopyLines = append(df.CopyLines, rest)
			c := Copy{}
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if v, ok := strings.CutPrefix(f[0], "--from="); ok {
					c.From = v
				}
				f = f[1:]
			}
			if len(f) < 2 {
				return nil, fmt.Errorf("Dockerfile: COPY %s: want sources and a destination", rest)
			}
			c.Sources, c.Dest = f[:len(f)-1], f[len(f)-1]
			st.Copies = append(st.Copies, c)
		case "HEALTHCHECK":
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) > 0 && strings.EqualFold(f[0], "NONE") {
				st.Healthcheck = nil
				continue
			}
			if len(f) == 0 || !strings.EqualFold(f[0], "CMD") {
				return nil, fmt.Errorf("Dockerfile: HEALTHCHECK %s: want [options] CMD [...]", rest)
			}
			argv, err := execForm(instr, strings.TrimSpace(strings.Join(f[1:], " ")))
			if err != nil {
				return nil, err
			}
			st.Healthcheck = argv
		case "CMD":
			argv, err := execForm(instr, rest)
			if err != nil {
				return nil, err
			}
			st.Cmd = argv
		}
	}
	return df, nil
}

func (m *Manifest) checkDockerfile(path string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	df, err := ParseDockerfile(data)
	if err != nil {
		return []error{err}
	}
	var errs []error
	ver := strings.TrimPrefix(m.CaddyVersion, "v")
	want := []string{"caddy:" + ver + "-builder", "caddy:" + ver}
	if len(df.From) != 2 || df.From[0] != want[0] || df.From[1] != want[1] {
		errs = append(errs, fmt.Errorf("Dockerfile: FROM: want %s then %s (pinned to xcaddy.json's caddy_version), got %v", want[0], want[1], df.From))
	}
	for _, f := range df.From {
		if strings.HasSuffix(f, ":latest") || !strings.Contains(f, ":") {
			errs = append(errs, fmt.Errorf("Dockerfile: FROM %s: images must be pinned, never latest", f))
		}
	}
	if df.Env["GONOSUMDB"] != m.GONOSUMDB {
		errs = append(errs, fmt.Errorf("Dockerfile: ENV GONOSUMDB=%q, xcaddy.json has %q", df.Env["GONOSUMDB"], m.GONOSUMDB))
	}
	if u := df.User; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
		errs = append(errs, fmt.Errorf("Dockerfile: USER %q: the image must run as a non-root user", u))
	}
	exposed := map[string]bool{}
	for _, e := range df.Expose {
		exposed[e] = true
	}
	for _, p := range []string{"80", "443", "443/udp"} {
		if !exposed[p] {
			errs = append(errs, fmt.Errorf("Dockerfile: EXPOSE: %s missing", p))
		}
	}
	built := false
	for _, r := range df.Runs {
		if strings.Contains(r, "./cmd/neo-build") && strings.Contains(r, "xcaddy.json") {
			built = true
		}
		if strings.Contains(r, "--with") {
			errs = append(errs, fmt.Errorf("Dockerfile: RUN %q: plugins come from xcaddy.json through cmd/neo-build, not --with flags", r))
		}
	}
	if !built {
		errs = append(errs, errors.New("Dockerfile: no RUN builds the binary with ./cmd/neo-build from xcaddy.json"))
	}
	copied := false
	for _, c := range df.CopyLines {
		if strings.Contains(c, "caddyfiles") {
			copied = true
		}
	}
	if !copied {
		errs = append(errs, errors.New("Dockerfile: caddyfiles/ is not copied into the image"))
	}
	errs = append(errs, checkImage(df.Image())...)
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), ".dockerignore")); err != nil {
		errs = append(errs, errors.New("Dockerfile: no .dockerignore beside it (the build context would hold .git and build outputs)"))
	}
	return errs
}

// checkImage checks that the image runs as it must: a health check, a
// command, and every directory it writes (Caddy's data and config
// directories, TMPDIR) inside a volume.
func checkImage(img *Stage) []error {
	if img == nil {
		return nil
	}
	var errs []error
	if len(img.Healthcheck) == 0 {
		errs = append(errs, errors.New("Dockerfile: no HEALTHCHECK in the image"))
	}
	if len(img.Cmd) == 0 {
		errs = append(errs, errors.New("Dockerfile: no CMD (exec form) in the image"))
	}
	env := map[string]string{}
	for _, kv := range img.Env {
		env[kv[0]] = kv[1]
	}
	for _, k := range []string{"XDG_DATA_HOME", "XDG_CONFIG_HOME", "TMPDIR"} {
		v := env[k]
		in := false
		for _, vol := range img.Volumes {
			if v == vol || strings.HasPrefix(v, strings.TrimSuffix(vol, "/")+"/") {
				in = true
			}
		}
		if !in {
			errs = append(errs, fmt.Errorf("Dockerfile: ENV %s=%q: the image writes there, it must be inside a VOLUME (%v)", k, v, img.Volumes))
		}
	}
	return errs
}
