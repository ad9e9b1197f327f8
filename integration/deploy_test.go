package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// The deployment tests run the production role files of caddyfiles/ as
// shipped, configured only through their environment variables, as an
// operator would.

// prodNATS runs a nats-server with the production users and permissions
// (caddyfiles/nats/nats-server.conf) on a free loopback port; the roles'
// passwords are pw-<user>-0123456789. It returns the client URL.
func prodNATS(t *testing.T) string {
	t.Helper()
	for _, u := range []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"} {
		t.Setenv(natsPasswordVar(u), natsPassword(u))
	}
	opts, err := server.ProcessConfigFile(filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", port
	ns := startNATSServerOpts(t, opts)
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

func natsPasswordVar(user string) string {
	return "NEO_NATS_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_")) + "_PASSWORD"
}

func natsPassword(user string) string { return "pw-" + user + "-0123456789" }

// testKEK is the identity key-encryption key of the tests' production
// edges (NEO_IDENTITY_KEK: 32 bytes, base64).
var testKEK = base64.StdEncoding.EncodeToString([]byte("deploy-test-identity-kek-0123456"))

// role is one production role file with what it needs to run on loopback.
type role struct {
	name    string
	file    string
	secrets map[string]string // the secrets it requires, with good values
	// env returns the role's settings on the given free ports: admin
	// address first, then the addresses it must listen on.
	env func(ports []int) (env []string, admin string, listen []string)
}

func productionRoles() []role {
	bind := "NEO_BIND=127.0.0.1"
	return []role{
		{name: "edge", file: "caddyfiles/edge.Caddyfile",
			secrets: map[string]string{"NEO_IDENTITY_KEK": testKEK, "NEO_NATS_EDGE_PASSWORD": natsPassword("edge")},
			env: func(p []int) ([]string, string, []string) {
				return []string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", p[0]), fmt.Sprintf("NEO_HTTPS_PORT=%d", p[1]), fmt.Sprintf("NEO_HTTP_PORT=%d", p[2]), bind, "NEO_TLS=internal"},
					fmt.Sprintf("127.0.0.1:%d", p[0]), []string{fmt.Sprintf("127.0.0.1:%d", p[1]), fmt.Sprintf("127.0.0.1:%d", p[2])}
			}},
		{name: "stage", file: "caddyfiles/stage.Caddyfile",
			secrets: map[string]string{"NEO_NATS_GW_PASSWORD": natsPassword("gw-prod")},
			env: func(p []int) ([]string, string, []string) {
				return []string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", p[0]), fmt.Sprintf("NEO_STAGE_PORT=%d", p[1]), "NEO_STAGE=prod"},
					fmt.Sprintf("127.0.0.1:%d", p[0]), []string{fmt.Sprintf("127.0.0.1:%d", p[1])}
			}},
		{name: "platform", file: "caddyfiles/platform.Caddyfile",
			secrets: map[string]string{"NEO_NATS_PLATFORM_PASSWORD": natsPassword("platform")},
			env: func(p []int) ([]string, string, []string) {
				return []string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", p[0]), fmt.Sprintf("NEO_PLATFORM_PORT=%d", p[1])},
					fmt.Sprintf("127.0.0.1:%d", p[0]), []string{fmt.Sprintf("127.0.0.1:%d", p[1])}
			}},
		{name: "egress", file: "caddyfiles/egress.Caddyfile",
			env: func(p []int) ([]string, string, []string) {
				return []string{fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", p[0]), fmt.Sprintf("NEO_EGRESS_PORT=%d", p[1])},
					fmt.Sprintf("127.0.0.1:%d", p[0]), []string{fmt.Sprintf("127.0.0.1:%d", p[1])}
			}},
	}
}

// startRole starts a role with its settings, the given secrets and more
// environment; args are more `caddy run` arguments.
func startRole(t *testing.T, r role, natsURL string, secrets map[string]string, args []string, more ...string) (*harness.Instance, error) {
	t.Helper()
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	env, admin, listen := r.env(ports)
	env = append(env, "NEO_NATS_URL="+natsURL, "NEO_TENANT_STORE=file", "NEO_CERT_STORAGE=file", "NEO_IDENTITY_STORE=memory")
	// only the secrets given (a value "" unsets it): the test process's own
	// (prodNATS) are removed
	unset := []string{"NEO_IDENTITY_KEK", "NEO_NATS_EDGE_PASSWORD", "NEO_NATS_GW_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD"}
	for k, v := range secrets {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, more...)
	inst, err := harness.StartProcess(harness.Options{Config: r.file, Admin: admin, Env: env, Unset: unset, Args: args, WaitFor: listen})
	if err == nil {
		t.Cleanup(inst.Stop)
	}
	return inst, err
}

// ready asks the instance's /neo/ready until it answers 200 or within
// passes, and returns the last answer.
func ready(t *testing.T, inst *harness.Instance, within time.Duration) (int, string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, body, err := inst.Admin("GET", "/neo/ready", nil)
		if err == nil && st == 200 || time.Now().After(deadline) {
			return st, string(body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProductionRolesFailClosed starts each production role (also as a
// zone of the three-zone deployment, with that zone's env file) with its
// secrets, without each of them, and with each set to a published
// default: only the first starts (and is ready); the others exit, naming
// the variable. The egress gateway needs no secret and carries no demo
// credential.
func TestProductionRolesFailClosed(t *testing.T) {
	natsURL := prodNATS(t)
	zoneEnv := []string{"--envfile", filepath.Join(harness.RepoRoot(), "caddyfiles", "zones", "az-b.env")}
	defaults := map[string]string{
		"NEO_NATS_EDGE_PASSWORD":     "neo-demo-password",
		"NEO_NATS_GW_PASSWORD":       "change-me",
		"NEO_NATS_PLATFORM_PASSWORD": "secret",
	}
	for _, r := range productionRoles() {
		for _, variant := range []struct {
			name string
			args []string
		}{{"single", nil}, {"zone-az-b", zoneEnv}} {
			t.Run(r.name+"/"+variant.name, func(t *testing.T) {
				inst, err := startRole(t, r, natsURL, r.secrets, variant.args)
				if err != nil {
					t.Fatalf("with its secrets: %v", err)
				}
				if st, body := ready(t, inst, 10*time.Second); st != 200 {
					t.Fatalf("with its secrets: /neo/ready %d %s", st, body)
				}
				if variant.args != nil {
					// the env file set the zone (and the process's own
					// settings won over the file's NATS URL and stores)
					st, body, _ := inst.Admin("GET", "/neo/", nil)
					if st != 200 || !strings.Contains(string(body), `"zone":"az-b"`) {
						t.Fatalf("zone env file not applied: %d %s", st, body)
					}
				}
				if r.name == "egress" {
					_, cfg, _ := inst.Admin("GET", "/config/", nil)
					if strings.Contains(string(cfg), "credential") || strings.Contains(string(cfg), "demo") {
						t.Fatalf("the production egress carries demo callers or credentials: %.300s", cfg)
					}
				}
				inst.Stop()
				for name := range r.secrets {
					for _, bad := range []struct{ what, value string }{{"unset", ""}, {"default", defaults[name]}} {
						if bad.what == "default" && bad.value == "" {
							continue // no published default (the identity key)
						}
						secrets := map[string]string{}
						for k, v := range r.secrets {
							secrets[k] = v
						}
						secrets[name] = bad.value
						inst, err := startRole(t, r, natsURL, secrets, variant.args)
						if err == nil {
							inst.Stop()
							t.Fatalf("started with %s %s", name, bad.what)
						}
						want := name + ": not set"
						if bad.what == "default" {
							want = name + ": is a publicly known default"
						}
						if !strings.Contains(err.Error(), want) {
							t.Fatalf("with %s %s, the start error does not say %q:\n%.2000s", name, bad.what, want, err)
						}
					}
				}
			})
		}
	}
}

// TestSecretReloadRefused: an edge started with its NATS password, then
// `caddy reload` from a shell without it (the Caddyfile's {$VAR} is
// substituted there): the reload is refused naming the variable, logged by
// the server, and the running config stays as it was (still connected,
// still ready). The published default is refused the same way; the
// identity key, which the server reads from its own environment
// ({env.NEO_IDENTITY_KEK}), does not depend on the reloading shell; a
// reload with a new password of one's own applies.
func TestSecretReloadRefused(t *testing.T) {
	natsURL := prodNATS(t)
	r := productionRoles()[0]
	inst, err := startRole(t, r, natsURL, r.secrets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := ready(t, inst, 10*time.Second); st != 200 {
		t.Fatalf("/neo/ready %d %s", st, body)
	}
	config := func() string {
		t.Helper()
		st, cfg, err := inst.Admin("GET", "/config/", nil)
		if err != nil || st != 200 {
			t.Fatalf("GET /config/: %d %v", st, err)
		}
		return string(cfg)
	}
	before := config()
	// caddy reload from a shell with the operator's settings but not the
	// given secrets (and env's values)
	reloadFrom := func(env map[string]string) (string, error) {
		bin, err := harness.Binary()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "reload", "--config", r.file, "--address", inst.Opts.Admin)
		cmd.Dir = harness.RepoRoot()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		for _, kv := range inst.Opts.Env {
			k, _, _ := strings.Cut(kv, "=")
			if _, secret := r.secrets[k]; !secret {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := reloadFrom(map[string]string{"NEO_IDENTITY_KEK": testKEK})
	if err == nil {
		t.Fatalf("the reload without NEO_NATS_EDGE_PASSWORD was applied:\n%s", out)
	}
	if !strings.Contains(out, "NEO_NATS_EDGE_PASSWORD: not set") {
		t.Fatalf("the refused reload does not name the variable:\n%s", out)
	}
	if !strings.Contains(inst.Logs(), `"secrets":["NEO_NATS_EDGE_PASSWORD: not set`) {
		t.Fatal("the refused reload was not logged by the server")
	}
	if after := config(); after != before {
		t.Fatal("the refused reload changed the running config")
	}
	if st, body := ready(t, inst, 10*time.Second); st != 200 {
		t.Fatalf("after the refused reload: /neo/ready %d %s", st, body)
	}
	// the published default, set explicitly: refused the same way
	if out, err := reloadFrom(map[string]string{"NEO_NATS_EDGE_PASSWORD": "neo-demo-password"}); err == nil || !strings.Contains(out, "NEO_NATS_EDGE_PASSWORD: is a publicly known default") {
		t.Fatalf("reload with the default password: %v\n%s", err, out)
	}
	if after := config(); after != before {
		t.Fatal("the refused reload changed the running config")
	}
	// the real password, from a shell without the identity key: applied
	// (the server reads the key from its own environment)
	if out, err := reloadFrom(map[string]string{"NEO_NATS_EDGE_PASSWORD": natsPassword("edge")}); err != nil {
		t.Fatalf("reload with the password, without the identity key: %v\n%s", err, out)
	}
	if st, body := ready(t, inst, 10*time.Second); st != 200 {
		t.Fatalf("after the reload: /neo/ready %d %s", st, body)
	}
}

// TestAllRolesOnOneHost starts every role at once on one host with its
// default admin address and ports (only bound to loopback): edge, a stage
// gateway per stage, the platform listener, the egress gateway and the
// local topology. Each answers on its own admin address with its own
// config (a reload of one role's file reaches that role only), and a
// runtime request goes edge → NATS → stage gateway → replica.
func TestAllRolesOnOneHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the edge's default ports 443 and 80 need root")
	}
	natsURL := prodNATS(t)
	dir := t.TempDir()
	// the replica of the test tenant, on a free port
	rep := newClusterReplica(t, "az-a", 0)
	tenants := filepath.Join(dir, "tenants")
	if err := os.MkdirAll(tenants, 0o755); err != nil {
		t.Fatal(err)
	}
	tenant := fmt.Sprintf("tenant demo {\n\tapp orders {\n\t\tpublic\n\t\tstage prod {\n\t\t\treplica %s az-a\n\t\t}\n\t}\n}\n", rep.addr)
	if err := os.WriteFile(filepath.Join(tenants, "demo.caddy"), []byte(tenant), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"NEO_NATS_URL=" + natsURL, "NEO_TENANTS=" + tenants, "NEO_BIND=127.0.0.1", "NEO_TLS=internal"}
	type proc struct {
		name, file, admin string
		env               []string
		listen            []string
	}
	procs := []proc{
		{"edge", "caddyfiles/edge.Caddyfile", "localhost:2020", []string{"NEO_IDENTITY_KEK=" + testKEK, "NEO_NATS_EDGE_PASSWORD=" + natsPassword("edge")},
			[]string{"127.0.0.1:443", "127.0.0.1:80"}},
		{"stage prod", "caddyfiles/stage.Caddyfile", "localhost:2021", []string{"NEO_STAGE=prod", "NEO_NATS_GW_PASSWORD=" + natsPassword("gw-prod")}, []string{"127.0.0.1:9701"}},
		{"stage dev", "caddyfiles/stage.Caddyfile", "localhost:2031", []string{"NEO_STAGE=dev", "NEO_ADMIN=localhost:2031", "NEO_STAGE_PORT=9702", "NEO_NATS_GW_PASSWORD=" + natsPassword("gw-dev")}, []string{"127.0.0.1:9702"}},
		{"platform", "caddyfiles/platform.Caddyfile", "localhost:2022", []string{"NEO_NATS_PLATFORM_PASSWORD=" + natsPassword("platform")}, []string{"127.0.0.1:9800"}},
		{"egress", "caddyfiles/egress.Caddyfile", "localhost:2023", nil, []string{"127.0.0.1:3128"}},
		{"local", "caddyfiles/local.Caddyfile", "localhost:2019", nil, []string{"127.0.0.1:8443", "127.0.0.1:8080", "127.0.0.1:9700", "127.0.0.1:4222"}},
	}
	insts := map[string]*harness.Instance{}
	for _, p := range procs {
		env := append([]string{}, common...)
		if p.name == "local" {
			// the local topology runs its own embedded NATS and demo
			// tenants (its demo users belong to them)
			env = nil
		}
		insts[p.name] = harness.Start(t, harness.Options{Config: p.file, Admin: p.admin, Env: append(env, p.env...), WaitFor: p.listen})
	}
	for _, p := range procs {
		if st, body := ready(t, insts[p.name], 10*time.Second); st != 200 {
			t.Fatalf("%s: /neo/ready %d %s", p.name, st, body)
		}
		// each admin address serves its own role's config
		_, cfg, _ := insts[p.name].Admin("GET", "/config/", nil)
		if !strings.Contains(string(cfg), strings.TrimPrefix(p.admin, "localhost")) {
			t.Fatalf("%s: the config at %s is not its own", p.name, p.admin)
		}
	}
	// a runtime request through the edge, NATS, the prod gateway
	roots, err := insts["edge"].RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	c := harness.Client("127.0.0.1:443", roots)
	if _, err := waitServed(c, "https://demo.apps.localhost/orders/x", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// `caddy reload` of the egress file reaches the egress gateway, not the
	// platform listener (they once shared localhost:2029)
	bin, _ := harness.Binary()
	cmd := exec.Command(bin, "reload", "--config", "caddyfiles/egress.Caddyfile", "--force")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), common...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload egress: %v\n%s", err, out)
	}
	_, cfg, _ := insts["platform"].Admin("GET", "/config/", nil)
	if strings.Contains(string(cfg), "neo_egress") {
		t.Fatal("the egress reload replaced the platform listener's config")
	}
	_, cfg, _ = insts["egress"].Admin("GET", "/config/", nil)
	if !strings.Contains(string(cfg), "neo_egress") {
		t.Fatal("the egress gateway lost its config")
	}
}

// TestReadiness: /neo/ready is 503 naming the NATS connection while the
// NATS server is down, 200 again once the role has reconnected; /neo/live
// is 200 throughout.
func TestReadiness(t *testing.T) {
	for _, u := range []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"} {
		t.Setenv(natsPasswordVar(u), natsPassword(u))
	}
	opts, err := server.ProcessConfigFile(filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", port
	ns := startNATSServerOpts(t, opts)
	natsURL := ns.ClientURL()
	r := productionRoles()[1] // stage
	inst, err := startRole(t, r, natsURL, r.secrets, nil)
	if err != nil {
		t.Fatal(err)
	}
	readyState := func() (int, map[string]any) {
		st, body, err := inst.Admin("GET", "/neo/ready", nil)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.Unmarshal(body, &v)
		return st, v
	}
	if st, v := readyState(); st != 200 || v["ready"] != true {
		t.Fatalf("NATS up: %d %v", st, v)
	}
	ns.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, v := readyState()
		checks, _ := v["checks"].(map[string]any)
		if st == 503 && checks != nil && strings.Contains(fmt.Sprint(checks["nats"]), "connection default") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS down: %d %v, want 503 naming the connection", st, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, body, _ := inst.Admin("GET", "/neo/live", nil); st != 200 || !strings.Contains(string(body), `"live":true`) {
		t.Fatalf("live: %d %s", st, body)
	}
	ns2 := startNATSServerOpts(t, opts)
	t.Cleanup(ns2.Shutdown)
	if st, body := ready(t, inst, 20*time.Second); st != 200 {
		t.Fatalf("NATS back: %d %s", st, body)
	}
	// the health command the image's HEALTHCHECK runs
	bin, _ := harness.Binary()
	out, err := exec.Command(bin, "neo-health", "--address", inst.Opts.Admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ready":true`) {
		t.Fatalf("caddy neo-health: %v\n%s", err, out)
	}
	free, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "neo-health", "--address", "127.0.0.1:"+strconv.Itoa(free)).CombinedOutput(); err == nil {
		t.Fatalf("caddy neo-health against no admin API succeeded:\n%s", out)
	}
}
