package integration

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/manifest"
)

// The image test: no Docker engine here, so the test lays out a root
// directory as the Dockerfile's image stage does (parsed from the Dockerfile:
// COPY, ENV, USER, VOLUME, WORKDIR, HEALTHCHECK, CMD), makes it read-only
// except the volumes, and runs the image's CMD and HEALTHCHECK in it, in a
// mount namespace, as the image's user, with `docker run -e/-v`-style
// additions (secrets, loopback ports, the internal CA, a tenant directory).

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
)

// staticBinary returns a caddy binary without a dynamic loader, as the image's
// builder stage makes it (ENV CGO_ENABLED=0): NEO_CADDY_BIN if it is one,
// else one built into a temporary directory.
func staticBinary(t *testing.T, env map[string]string) string {
	t.Helper()
	staticOnce.Do(func() {
		if bin, err := harness.Binary(); err == nil && isStatic(bin) {
			staticBin = bin
			return
		}
		dir, err := os.MkdirTemp("", "caddy-neo-static-")
		if err != nil {
			staticErr = err
			return
		}
		staticBin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", staticBin, "./cmd/caddy")
		cmd.Dir = harness.RepoRoot()
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("go build (the image builder's environment %v): %v\n%s", env, err, out)
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	if !isStatic(staticBin) {
		t.Fatalf("%s needs a dynamic loader: the builder stage must set CGO_ENABLED=0", staticBin)
	}
	return staticBin
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// image is the image stage of the Dockerfile laid out on disk.
type image struct {
	stage    *manifest.Stage
	root     string   // the root directory (read-only in the namespace)
	bin      string   // the binary bound at /usr/bin/caddy
	volumes  []string // the VOLUME paths
	volDirs  map[string]string
	binds    [][2]string // more read-only binds (docker run -v ...:ro): host, container
	uid, gid int
	home     string
	env      []string // the image's environment, as Docker gives it
}

func loadImage(t *testing.T) *image {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the image test needs root for a mount namespace")
	}
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := manifest.ParseDockerfile(data)
	if err != nil {
		t.Fatal(err)
	}
	st := df.Image()
	im := &image{stage: st, root: t.TempDir(), volDirs: map[string]string{}}
	// USER uid:gid, numeric
	u, g, _ := strings.Cut(st.User, ":")
	if im.uid, err = strconv.Atoi(u); err != nil || im.uid == 0 {
		t.Fatalf("USER %q: want a numeric non-root uid", st.User)
	}
	if im.gid, err = strconv.Atoi(g); err != nil {
		im.gid = im.uid
	}
	// the user's home, as the RUN line creates it (Docker takes HOME from
	// the image's passwd entry)
	im.home = "/"
	for _, r := range st.Runs {
		if m := regexp.MustCompile(`adduser .*-u ` + u + `\b.*-h (\S+)`).FindStringSubmatch(r); m != nil {
			im.home = m[1]
		}
	}
	// the builder's environment, for the binary
	builderEnv := map[string]string{}
	for _, kv := range df.Stages[0].Env {
		builderEnv[kv[0]] = kv[1]
	}
	// COPY: the builder's binary, files of the build context
	for _, c := range st.Copies {
		if c.From != "" {
			if len(c.Sources) != 1 || c.Dest != "/usr/bin/caddy" {
				t.Fatalf("COPY --from=%s %v %s: only the builder's binary is expected", c.From, c.Sources, c.Dest)
			}
			im.bin = staticBinary(t, builderEnv)
			mkfile(t, filepath.Join(im.root, c.Dest))
			continue
		}
		for _, src := range c.Sources {
			copyTree(t, filepath.Join(harness.RepoRoot(), src), filepath.Join(im.root, c.Dest))
		}
	}
	if im.bin == "" {
		t.Fatal("the image stage copies no binary from the builder")
	}
	// VOLUME: directories kept across restarts (like named volumes), made
	// and owned by the user as the RUN line does
	for _, v := range st.Volumes {
		ok := false
		for _, r := range st.Runs {
			if strings.Contains(r, "mkdir -p") && strings.Contains(r, v) && strings.Contains(r, "chown -R "+st.User+" ") {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("VOLUME %s: no RUN makes it and gives it to %s", v, st.User)
		}
		dir := t.TempDir()
		if err := os.Chown(dir, im.uid, im.gid); err != nil {
			t.Fatal(err)
		}
		im.volumes = append(im.volumes, v)
		im.volDirs[v] = dir
		mkdir(t, filepath.Join(im.root, v))
	}
	for _, d := range []string{"proc", "dev", "tmp", "etc", strings.TrimPrefix(im.home, "/"), strings.TrimPrefix(st.Workdir, "/")} {
		mkdir(t, filepath.Join(im.root, d))
	}
	mkfile(t, filepath.Join(im.root, "dev", "null"))
	mkfile(t, filepath.Join(im.root, "etc", "hosts")) // Docker binds the host's
	// the image's environment: Docker's default PATH, HOME from passwd, ENV
	im.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + im.home}
	for _, kv := range st.Env {
		im.env = append(im.env, kv[0]+"="+kv[1])
	}
	return im
}

// command returns a command that runs argv in the image: a private mount
// namespace, the root bound read-only, the binary, volumes and binds in
// place, then argv run in the root, in WORKDIR, as USER.
func (im *image) command(argv []string) *exec.Cmd {
	var sb strings.Builder
	sb.WriteString("set -e\nR=\"$NEO_IMAGE_ROOT\"\nmount --bind \"$R\" \"$R\"\n")
	q := strconv.Quote
	fmt.Fprintf(&sb, "mount --bind %s \"$R\"/usr/bin/caddy\n", q(im.bin))
	for _, v := range im.volumes {
		fmt.Fprintf(&sb, "mount --bind %s \"$R\"%s\n", q(im.volDirs[v]), v)
	}
	for _, b := range im.binds {
		fmt.Fprintf(&sb, "mount --bind %s \"$R\"%s\n", q(b[0]), b[1])
	}
	sb.WriteString("mount --bind /dev/null \"$R\"/dev/null\nmount --bind /etc/hosts \"$R\"/etc/hosts\nmount -t proc proc \"$R\"/proc\n")
	// read-only: the root, the binary, the binds; the volumes stay writable
	sb.WriteString("mount -o remount,bind,ro \"$R\"\nmount -o remount,bind,ro \"$R\"/usr/bin/caddy\n")
	for _, b := range im.binds {
		fmt.Fprintf(&sb, "mount -o remount,bind,ro \"$R\"%s\n", b[1])
	}
	wd := im.stage.Workdir
	if wd == "" {
		wd = "/"
	}
	fmt.Fprintf(&sb, "unset NEO_IMAGE_ROOT\nexec unshare --root=\"$R\" --wd=%s --setgid=%d --setuid=%d -- \"$@\"\n", q(wd), im.gid, im.uid)
	args := append([]string{"-m", "--propagation", "private", "sh", "-c", sb.String(), "sh"}, argv...)
	return exec.Command("unshare", args...)
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkfile(t *testing.T, path string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies src (a file, or a directory's content) to dst, as COPY does.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImage runs the image's CMD (the edge role) as the image would: it
// serves a tenant over NATS through a stage gateway to its replica, its
// HEALTHCHECK passes, it keeps a tenant created through the admin API and
// its certificates across a restart, and it wrote only under its volumes.
func TestImage(t *testing.T) {
	im := loadImage(t)
	natsURL := prodNATS(t)
	// the replica and the tenant directory (docker run -v .../tenants:/etc/neo/tenants:ro)
	rep := newClusterReplica(t, "az-a", 0)
	tenants := t.TempDir()
	tenant := fmt.Sprintf("tenant demo {\n\tapp orders {\n\t\tpublic\n\t\tstage prod {\n\t\t\treplica %s az-a\n\t\t}\n\t}\n}\n", rep.addr)
	if err := os.WriteFile(filepath.Join(tenants, "demo.caddy"), []byte(tenant), 0o644); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(im.root, "etc", "neo", "tenants"))
	im.binds = append(im.binds, [2]string{tenants, "/etc/neo/tenants"})

	// the stage gateway the edge sends to (a process of its own)
	gwPorts, err := harness.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	gw := harness.Start(t, harness.Options{Config: "caddyfiles/stage.Caddyfile", Admin: fmt.Sprintf("127.0.0.1:%d", gwPorts[0]),
		Env: []string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", gwPorts[0]), fmt.Sprintf("NEO_STAGE_PORT=%d", gwPorts[1]), "NEO_NATS_URL=" + natsURL,
			"NEO_NATS_GW_PASSWORD=" + natsPassword("gw-prod"), "NEO_TENANTS=" + tenants},
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", gwPorts[1])}})

	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])
	run := append(append([]string{}, im.env...), // docker run -e ...
		"NEO_ADMIN="+admin, fmt.Sprintf("NEO_HTTPS_PORT=%d", ports[1]), fmt.Sprintf("NEO_HTTP_PORT=%d", ports[2]),
		"NEO_BIND=127.0.0.1", "NEO_TLS=internal", "NEO_NATS_URL="+natsURL, "NEO_TENANTS=/etc/neo/tenants",
		"NEO_IDENTITY_KEK="+testKEK, "NEO_NATS_EDGE_PASSWORD="+natsPassword("edge"),
		"NEO_IMAGE_ROOT="+im.root)
	start := func() *harness.Instance {
		t.Helper()
		inst, err := harness.StartProcess(harness.Options{
			Config: im.stage.Cmd[len(im.stage.Cmd)-3], // only for the harness's records: the CMD below names it
			Admin:  admin, Env: run, WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[1])},
			Command: func(string, []string) *exec.Cmd { return im.command(im.stage.Cmd) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("image logs:\n%s", inst.Logs())
			}
			inst.Stop()
		})
		return inst
	}
	healthcheck := func() error {
		t.Helper()
		cmd := im.command(im.stage.Healthcheck)
		cmd.Env = run
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}

	inst := start()
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	c := harness.Client(fmt.Sprintf("127.0.0.1:%d", ports[1]), roots)
	url := func(host string) string { return fmt.Sprintf("https://%s:%d/orders/x", host, ports[1]) }
	if _, err := waitServed(c, url("demo.apps.localhost"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for err := healthcheck(); err != nil; err = healthcheck() {
		if time.Now().After(deadline) {
			t.Fatalf("HEALTHCHECK %v: %v", im.stage.Healthcheck, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a tenant created at run time, through the admin APIs of the edge and
	// of the gateway (each keeps it in its own file store)
	body := fmt.Sprintf(`{"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":%q,"zone":"az-a"}]}}}}}`, rep.addr)
	for _, node := range []*harness.Instance{inst, gw} {
		if st, out, err := node.Admin("PUT", "/neo/tenants/initech", body); err != nil || st != 201 {
			t.Fatalf("PUT /neo/tenants/initech: %d %s %v", st, out, err)
		}
	}
	crm := fmt.Sprintf("https://initech.apps.localhost:%d/crm/", ports[1])
	if _, err := waitServed(c, crm, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	firstRoot := roots

	// restart: the same volumes
	inst.Stop()
	if inst.Logs() == "" || strings.Contains(inst.Logs(), "permission denied") || strings.Contains(inst.Logs(), "read-only file system") {
		t.Fatalf("the image wrote outside its volumes:\n%s", inst.Logs())
	}
	inst = start()
	st, out, err := inst.Admin("GET", "/neo/tenants", nil)
	if err != nil || st != 200 || !strings.Contains(string(out), `{"name":"initech","source":"store"}`) {
		t.Fatalf("after the restart, the run-time tenant is gone: %d %s %v", st, out, err)
	}
	roots, err = inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	if !roots.Equal(firstRoot) {
		t.Fatal("after the restart the internal CA is another: the data volume was not kept")
	}
	c = harness.Client(fmt.Sprintf("127.0.0.1:%d", ports[1]), roots)
	for _, u := range []string{crm, url("demo.apps.localhost")} {
		if _, err := waitServed(c, u, 30*time.Second); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	if err := healthcheck(); err != nil {
		t.Fatalf("HEALTHCHECK after the restart: %v", err)
	}
	// what the image wrote: under its volumes only (the root is read-only,
	// so a write elsewhere would have failed above), and owned by its user
	var stored []string
	for v, dir := range im.volDirs {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				stored = append(stored, filepath.Join(v, rel))
			}
			return nil
		})
	}
	want := filepath.Join("/data", "caddy", "neo", "tenants", "initech.json")
	found := false
	for _, f := range stored {
		found = found || f == want
	}
	if !found {
		t.Fatalf("the run-time tenant is not in the data volume at %s; the volumes hold %v", want, stored)
	}
	var summary struct {
		Zone string `json:"zone"`
	}
	_, out, _ = inst.Admin("GET", "/neo/", nil)
	json.Unmarshal(out, &summary)
	t.Logf("the image's edge (zone %s) wrote %d files, all under %v", summary.Zone, len(stored), im.volumes)
}
