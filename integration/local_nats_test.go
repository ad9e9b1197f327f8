package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// localNATS is the local topology's embedded NATS listener.
const localNATS = "nats://127.0.0.1:4222"

// localCredentials reads the passwords the local topology generated for the
// users of its NATS authorization file, from Caddy's data directory under
// home (the README tells users where), and checks the file's mode.
func localCredentials(t *testing.T, home string) (map[string]string, []byte) {
	t.Helper()
	path := filepath.Join(home, "data", "caddy", "neo", "nats-local-credentials.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("credentials file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %#o, want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Users map[string]string }
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"edge", "gw-dev", "gw-prod", "monitor"} {
		if len(f.Users[u]) < 32 {
			t.Fatalf("no password for %s in %s", u, data)
		}
	}
	return f.Users, data
}

// ledgerHead is a request head (framing version 1) for acme's private app
// ledger in prod, with a bearer token of another tenant's user riding along:
// what an attacker publishes straight to the app's subject to skip the
// edge's sign-in and WAF.
func ledgerHead() nats.Header {
	return nats.Header{"Neo-Nats-Kind": {"head"}, "Neo-Nats-Version": {"1"}, "Neo-Nats-Method": {"GET"}, "Neo-Nats-Path": {"/ledger/entries"},
		"Neo-Nats-Host": {"acme.apps.localhost"}, "Neo-Nats-Window": {"8"}, "Neo-Nats-Length": {"0"}, "Neo-Nats-Eof": {"1"}}
}

// TestLocalNATSRequiresCredentials: the local topology's embedded NATS runs
// the production users and permissions. Anonymous clients and wrong
// credentials are refused; with the credentials of a role that is not a
// requester (monitor, the stage gateways, a tenant gateway) a request head
// published on acme's private app subject is refused by the server and never
// answered, and no such role can read another stage's or tenant's request
// heads. The monitor credentials from the data directory work with the nats
// CLI, as the README shows. (The platform role may send requests, as in
// production: it is the Platform-to-Runtime caller.)
func TestLocalNATSRequiresCredentials(t *testing.T) {
	inst, c := startLocal(t)
	users, _ := localCredentials(t, inst.Opts.Home)

	// the runtime path over NATS works with the authenticated connections
	if resp, rep := getReport(t, c, "https://acme.apps.localhost:8443/ledger/x"); resp.StatusCode != 200 || rep.App != "ledger" {
		t.Fatalf("runtime over NATS: %d %+v", resp.StatusCode, rep)
	}

	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", nil},
		{"wrong password", []nats.Option{nats.UserInfo("edge", "not-the-password-0123456789")}},
		{"another user's password", []nats.Option{nats.UserInfo("edge", users["monitor"])}},
		{"unknown user", []nats.Option{nats.UserInfo("admin", users["edge"])}},
		{"token", []nats.Option{nats.Token(users["edge"])}},
	} {
		t.Run("refused "+tc.name, func(t *testing.T) {
			nc, err := nats.Connect(localNATS, append(tc.opts, nats.Timeout(5*time.Second))...)
			if err == nil {
				defer nc.Close()
				// what the issue saw: an anonymous client reaching acme's private app
				msg, rerr := nc.RequestMsg(&nats.Msg{Subject: "neo.rt.prod.az-a.acme.ledger", Header: ledgerHead()}, 5*time.Second)
				status := ""
				if rerr == nil {
					status = msg.Header.Get("Neo-Nats-Status")
				}
				t.Fatalf("connected; a head on acme's ledger got status %q (%v)", status, rerr)
			}
			if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
				t.Fatalf("refused with %v, want an authorization violation", err)
			}
		})
	}

	for _, role := range []string{"monitor", "gw-dev", "gw-prod", "gw-prod-acme"} {
		t.Run("role "+role, func(t *testing.T) {
			nc, err := nats.Connect(localNATS, nats.UserInfo(role, users[role]))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			// publish a head with a reply subject the role may read
			// (_INBOX.> for monitor, its own _GW inbox for a gateway)
			reply := "_INBOX.attacker"
			if role != "monitor" {
				reply = "_GW." + strings.TrimPrefix(role, "gw-") + ".attacker"
			}
			replies, err := nc.SubscribeSync(reply)
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.PublishMsg(&nats.Msg{Subject: "neo.rt.prod.az-a.acme.ledger", Reply: reply, Header: ledgerHead()}); err != nil {
				t.Fatal(err)
			}
			// the server answers a violation before the PONG of this flush
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "neo.rt.prod.az-a.acme.ledger") {
				msg, rerr := replies.NextMsg(5 * time.Second)
				if rerr == nil {
					t.Fatalf("%s published a head on acme's ledger: answered with status %q", role, msg.Header.Get("Neo-Nats-Status"))
				}
				t.Fatalf("%s: publish not refused by the server (last error %v)", role, err)
			}
			// reading request heads beyond the role's own stage
			for _, subj := range []string{"neo.rt.>", "neo.rt.prod.az-a.globex.>", "neo.rt.dev.az-a.acme.>", "_EDGE.>"} {
				if role == "gw-dev" && subj == "neo.rt.dev.az-a.acme.>" {
					continue // its own stage: its role
				}
				if role == "gw-prod" && subj == "neo.rt.prod.az-a.globex.>" {
					continue
				}
				sub, err := nc.SubscribeSync(subj)
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subj) {
					t.Errorf("%s may subscribe to %s (last error %v)", role, subj, err)
				}
				_ = sub.Unsubscribe()
			}
		})
	}

	// the README's way to look at the gateways with the monitor credentials
	cli, err := exec.LookPath("nats")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		cli = strings.TrimSpace(string(gopath)) + "/bin/nats"
		if _, err := os.Stat(cli); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("nats CLI not installed; .ci/run installs it")
			}
			t.Log("nats CLI not installed: skipping `nats micro ls`")
			return
		}
	}
	out, err := exec.Command(cli, "--server", localNATS, "--user", "monitor", "--password", users["monitor"], "micro", "ls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "neo_stage_gateway") || !strings.Contains(string(out), "zone az-b") {
		t.Fatalf("nats micro ls as monitor: %v\n%s", err, out)
	}
	if out, err := exec.Command(cli, "--server", localNATS, "micro", "ls").CombinedOutput(); err == nil {
		t.Fatalf("nats micro ls without credentials succeeded:\n%s", out)
	}
}

// TestLocalNATSCredentialsPersist: the passwords generated at the first
// start are kept in Caddy's data directory (0600) and reused, unchanged, by
// a config reload and by a restart; the runtime path over NATS works after
// each, and the stored monitor password still logs in.
func TestLocalNATSCredentialsPersist(t *testing.T) {
	home := t.TempDir()
	start := func() (*harness.Instance, *http.Client) {
		inst := harness.Start(t, harness.Options{
			Config: "caddyfiles/local.Caddyfile", Home: home,
			WaitFor: []string{"127.0.0.1:8443", "127.0.0.1:9121", "127.0.0.1:4222"},
		})
		roots, err := inst.RootPool("local")
		if err != nil {
			t.Fatal(err)
		}
		c := harness.Client("127.0.0.1:8443", roots)
		if err := harness.WaitServing(c, "https://acme.apps.localhost:8443/", 20*time.Second); err != nil {
			t.Fatal(err)
		}
		return inst, c
	}
	// the runtime path (edge → NATS → prod gateway) answers, within a
	// bound: a reload resubscribes the gateways
	runtimeOK := func(c *http.Client, when string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, rep := getReport(t, c, "https://acme.apps.localhost:8443/orders/persist")
			if resp.StatusCode == 200 && rep.Stage == "prod" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: runtime request over NATS: %d", when, resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	monitorLogsIn := func(pw, when string) {
		t.Helper()
		nc, err := nats.Connect(localNATS, nats.UserInfo("monitor", pw))
		if err != nil {
			t.Fatalf("%s: monitor with the stored password: %v", when, err)
		}
		nc.Close()
	}

	inst, c := start()
	users, first := localCredentials(t, home)
	runtimeOK(c, "first start")
	monitorLogsIn(users["monitor"], "first start")

	// a forced reload of the same config
	cfg, err := http.Get(inst.AdminURL("/config/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(cfg.Body)
	cfg.Body.Close()
	req, _ := http.NewRequest("POST", inst.AdminURL("/load"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even though unchanged
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, out)
	}
	if _, again := localCredentials(t, home); !bytes.Equal(again, first) {
		t.Fatalf("the reload rewrote the credentials:\n%s\n%s", first, again)
	}
	runtimeOK(c, "after the reload")
	monitorLogsIn(users["monitor"], "after the reload")

	// a restart with the same data directory
	inst.Stop()
	_, c = start()
	if _, again := localCredentials(t, home); !bytes.Equal(again, first) {
		t.Fatalf("the restart rewrote the credentials:\n%s\n%s", first, again)
	}
	runtimeOK(c, "after the restart")
	monitorLogsIn(users["monitor"], "after the restart")
}
