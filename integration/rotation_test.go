package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/natstest"
)

// cookieOf returns the value of a cookie the jar holds for u.
func cookieOf(c *http.Client, u, name string) string {
	for _, ck := range c.Jar.Cookies(mustURL(u)) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// dropAccessCookie removes the access-token cookie from the jar, as a
// browser does when its max-age (the token's lifetime) has passed.
func dropAccessCookie(c *http.Client, u string) {
	c.Jar.SetCookies(mustURL(u), []*http.Cookie{{Name: "__Host-neo_at", Value: "", Path: "/", MaxAge: -1, Secure: true}})
}

// TestSigningKeyRotationKeepsUsersIn: a browser signs in; the realm's
// signing key is rotated through the admin API; the browser's access token
// still opens the private app (overlap), its next renewal puts it on the
// new key, and after the old key is retired the old token is refused while
// the browser stays in. (The time-based end of the overlap is
// TestKeyRotationOverlap's, modules/identity, with a test clock.)
func TestSigningKeyRotationKeepsUsersIn(t *testing.T) {
	e := startIdentityEdge(t, identityEdgeOpts{})
	identityTenants(t, e)
	host := "acme-dev.apps.localhost"
	b := e.browserClient(t)
	if r := e.signInForm(t, b, host, "alice", "alice-password", "/ledger/"); r.status != 303 {
		t.Fatalf("sign-in: %d %.200q", r.status, r.body)
	}
	old := cookieOf(b, e.url(host, "/"), "__Host-neo_at")
	oldKid, _ := jwtHeader(t, old)["kid"].(string)
	if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
		t.Fatalf("signed in: %d", r.status)
	}
	keysOf := func(path string, method string) []map[string]any {
		t.Helper()
		var out struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal(e.admin(t, method, path, nil, 200), &out); err != nil {
			t.Fatal(err)
		}
		return out.Keys
	}
	keys := keysOf("/neo/identity/acme/dev/rotate", "POST")
	if len(keys) != 2 || keys[0]["kid"] == oldKid || keys[1]["kid"] != oldKid || keys[1]["verifies_until"] == nil {
		t.Fatalf("after rotate: %v (old %s)", keys, oldKid)
	}
	newKid := keys[0]["kid"].(string)
	// Unknown tenants and realms are 404; a GET cannot rotate.
	for path, want := range map[string]int{"/neo/identity/nosuch/dev/rotate": 404, "/neo/identity/acme/staging/rotate": 404} {
		if st, _, _ := e.inst.Admin("POST", path, nil); st != want {
			t.Fatalf("POST %s: %d, want %d", path, st, want)
		}
	}
	if st, _, _ := e.inst.Admin("GET", "/neo/identity/acme/dev/rotate", nil); st != 405 {
		t.Fatalf("GET rotate: %d", st)
	}
	// Overlap: the old token still verifies, both keys are published.
	if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
		t.Fatalf("old token after the rotation: %d", r.status)
	}
	if r := e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Authorization", "Bearer "+old); r.status != 200 {
		t.Fatalf("old bearer token after the rotation: %d", r.status)
	}
	jwks := e.do(t, nil, "GET", e.url(host, "/identity/.well-known/jwks.json"), nil).body
	if !strings.Contains(jwks, oldKid) || !strings.Contains(jwks, newKid) {
		t.Fatalf("jwks during the overlap: %s", jwks)
	}
	// The access token expires in the browser: it renews from its session
	// onto the new key.
	dropAccessCookie(b, e.url(host, "/"))
	if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
		t.Fatalf("renewal after the rotation: %d", r.status)
	}
	renewed := cookieOf(b, e.url(host, "/"), "__Host-neo_at")
	if k := jwtHeader(t, renewed)["kid"]; k != newKid {
		t.Fatalf("renewed token signed by %v, want the new key %s", k, newKid)
	}
	// End of the overlap (retired now): the old token is refused, the
	// browser stays signed in.
	if keys := keysOf("/neo/identity/acme/dev/retire", "POST"); len(keys) != 1 || keys[0]["kid"] != newKid {
		t.Fatalf("after retire: %v", keys)
	}
	if r := e.do(t, nil, "GET", e.url(host, "/ledger/"), nil, "Authorization", "Bearer "+old); r.status != 401 {
		t.Fatalf("old token after its key was retired: %d", r.status)
	}
	if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
		t.Fatalf("browser after the old key was retired: %d", r.status)
	}
	if jwks := e.do(t, nil, "GET", e.url(host, "/identity/.well-known/jwks.json"), nil).body; strings.Contains(jwks, oldKid) {
		t.Fatalf("retired key still published: %s", jwks)
	}
}

// TestKEKRotationKeepsUsersIn: edges keep identity state in JetStream; a
// browser signs in; the edge restarts with a new NEO_IDENTITY_KEK:
// without NEO_IDENTITY_KEK_PREVIOUS it refuses to start naming both
// variables; with it the browser stays signed in (access token, renewal)
// and the stored keys are re-sealed; restarted again without the previous
// key, the browser is still in.
func TestKEKRotationKeepsUsersIn(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	natstest.Start(t, port, filepath.Join(t.TempDir(), "js"))
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	oldKEK := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
	newKEK := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32))
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	opts := func(env ...string) identityEdgeOpts {
		return identityEdgeOpts{
			globals:  "neo_nats {\n\t\tconnection default {\n\t\t\tservers " + natsURL + "\n\t\t}\n\t}",
			store:    "store nats",
			identity: "key_encryption_key {env.NEO_IDENTITY_KEK}\n\t\tkey_encryption_key_previous {env.NEO_IDENTITY_KEK_PREVIOUS}\n\t\tstore nats",
			env:      env, home: home, ports: ports,
		}
	}
	e := startIdentityEdge(t, opts("NEO_IDENTITY_KEK="+oldKEK))
	identityTenants(t, e)
	host := "acme-dev.apps.localhost"
	b := e.browserClient(t)
	if r := e.signInForm(t, b, host, "alice", "alice-password", "/ledger/"); r.status != 303 {
		t.Fatalf("sign-in: %d %.200q", r.status, r.body)
	}
	// a second realm's keys, which nobody reads after the rotation: the
	// sweep re-seals them
	if r := e.do(t, nil, "GET", e.url("acme.apps.localhost", "/identity/.well-known/jwks.json"), nil); r.status != 200 {
		t.Fatalf("prod jwks: %d", r.status)
	}
	stillIn := func(e *identityEdge, what string) {
		t.Helper()
		if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
			t.Fatalf("%s: the signed-in browser got %d", what, r.status)
		}
		dropAccessCookie(b, e.url(host, "/"))
		if r := e.do(t, b, "GET", e.url(host, "/ledger/"), nil, "Accept", "text/html"); r.status != 200 {
			t.Fatalf("%s: renewal from the session got %d", what, r.status)
		}
	}
	stillIn(e, "before the rotation")
	e.inst.Stop()

	// New key alone: refused at start, naming the variables.
	cfg := e.inst.Opts
	cfg.Env = append(append([]string{}, cfg.Env[:len(cfg.Env)-1]...), "NEO_IDENTITY_KEK="+newKEK)
	if inst, err := harness.StartProcess(cfg); err == nil {
		inst.Stop()
		t.Fatal("the edge started with a new NEO_IDENTITY_KEK and no previous key")
	} else if !strings.Contains(err.Error(), "NEO_IDENTITY_KEK") || !strings.Contains(err.Error(), "key_encryption_key_previous") {
		t.Fatalf("refusal does not name the variables: %v", err)
	}

	// New key with the previous: still signed in; the sets are re-sealed.
	e2 := startIdentityEdge(t, opts("NEO_IDENTITY_KEK="+newKEK, "NEO_IDENTITY_KEK_PREVIOUS="+oldKEK))
	stillIn(e2, "new key with the previous")
	waitLog(t, e2.inst, `"identity key sets re-sealed"`)
	if line := logLine(e2.inst, `"identity key sets re-sealed"`); !strings.Contains(line, `"left":0`) || strings.Contains(line, `"resealed":0`) {
		t.Fatalf("re-seal: %s", line)
	}
	e2.inst.Stop()

	// The previous key removed: still signed in.
	e3 := startIdentityEdge(t, opts("NEO_IDENTITY_KEK="+newKEK))
	stillIn(e3, "new key alone after the re-seal")
	if r := e3.do(t, nil, "GET", e3.url("acme.apps.localhost", "/identity/.well-known/jwks.json"), nil); r.status != 200 {
		t.Fatalf("prod realm after the rotation: %d %s", r.status, r.body)
	}
}

func logLine(inst *harness.Instance, s string) string {
	for _, l := range strings.Split(inst.Logs(), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestNATSCredentialRotation follows docs/operations.md ("NATS
// credentials") with the production nats-server.conf and the real stage
// gateway and edge role files: a second user per role with the same
// permission set and the new password, a nats-server reload, a gateway
// with the -next user started beside the old one and the old one stopped,
// each edge taken out of the load balancer,
// reloaded onto its -next user and put back, the old users removed and
// nats-server reloaded again. A bounded loop of requests through the load
// balancer, the edges, NATS and the gateway runs the whole time; after the
// removal the old passwords are refused.
func TestNATSCredentialRotation(t *testing.T) {
	for _, u := range []string{"edge", "platform", "gw-prod", "gw-dev", "gw-prod-acme", "monitor"} {
		t.Setenv(natsPasswordVar(u), natsPassword(u))
	}
	dir := t.TempDir()
	natsPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(shipped), "listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", natsPort), 1)
	confPath := filepath.Join(dir, "nats-server.conf")
	write := func(s string) {
		if err := os.WriteFile(confPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(conf)
	opts, err := server.ProcessConfigFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	ns := startNATSServerOpts(t, opts)
	t.Cleanup(ns.Shutdown)
	natsURL := ns.ClientURL()

	replica := newClusterReplica(t, "az-a", 0)
	tenants := t.TempDir()
	if err := os.WriteFile(filepath.Join(tenants, "demo.caddy"), []byte(harness.ClusterTenant{Replicas: map[string]string{"az-a": replica.addr}}.Block()), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"NEO_TENANTS=" + tenants, "NEO_RUNTIME_DOMAIN=apps.localhost", "NEO_PLATFORM_DOMAIN=platform.localhost",
		"NEO_RL_CLIENT_EVENTS=1000000", "NEO_RL_HOST_EVENTS=1000000"}
	roles := productionRoles()
	gw, err := startRole(t, roles[1], natsURL, roles[1].secrets, nil, common...)
	if err != nil {
		t.Fatal(err)
	}
	// Two edges behind a load balancer (lb below).
	type lbEdge struct {
		inst     *harness.Instance
		client   *http.Client
		target   string
		inLB     atomic.Bool
		inFlight atomic.Int64
	}
	var edges []*lbEdge
	for range 2 {
		inst, err := startRole(t, roles[0], natsURL, roles[0].secrets, nil, common...)
		if err != nil {
			t.Fatal(err)
		}
		roots, err := inst.RootPool("local")
		if err != nil {
			t.Fatal(err)
		}
		e := &lbEdge{inst: inst, client: harness.Client(inst.Opts.WaitFor[0], roots),
			target: "https://demo.apps.localhost:" + strings.TrimPrefix(inst.Opts.WaitFor[0], "127.0.0.1:") + "/orders/rotation"}
		if _, err := waitServed(e.client, e.target, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		e.inLB.Store(true)
		edges = append(edges, e)
	}

	// The load: two clients through the load balancer (round robin over the
	// edges in it), each answer checked, bounded in count and time.
	type failure struct {
		start, end time.Time
		err        string
	}
	var (
		sent        atomic.Int64
		failures    []failure
		mu          sync.Mutex
		stop        = make(chan struct{})
		wg          sync.WaitGroup
		natsReloads []time.Time // when nats-server was told to reload
		step        atomic.Value
		rr          atomic.Uint64
	)
	step.Store("start")
	const maxRequests = 20000
	loopDeadline := time.Now().Add(3 * time.Minute)
	pick := func() *lbEdge {
		for {
			e := edges[rr.Add(1)%uint64(len(edges))]
			e.inFlight.Add(1)
			if e.inLB.Load() {
				return e
			}
			e.inFlight.Add(-1)
		}
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Load() < maxRequests && time.Now().Before(loopDeadline) {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				e := pick()
				start := time.Now()
				resp, err := e.client.Get(e.target)
				if err == nil {
					var a struct{ Replica string }
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if json.Unmarshal(body, &a) != nil || resp.StatusCode != 200 || a.Replica != replica.name {
						err = fmt.Errorf("status %d: %.200q", resp.StatusCode, body)
					}
				}
				e.inFlight.Add(-1)
				if err != nil {
					mu.Lock()
					failures = append(failures, failure{start, time.Now(), fmt.Sprintf("%s: %v", step.Load(), err)})
					mu.Unlock()
				}
			}
		}()
	}
	// served waits until n more requests have been sent (the load runs
	// across each step).
	served := func(n int64) {
		t.Helper()
		target := sent.Load() + n
		for sent.Load() < target {
			if time.Now().After(loopDeadline) {
				t.Fatal("the load loop ended before the procedure")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	reload := func(inst *harness.Instance, r role, env ...string) {
		t.Helper()
		bin, err := harness.Binary()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "reload", "--config", r.file, "--address", inst.Opts.Admin)
		cmd.Dir = harness.RepoRoot()
		cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, inst.Opts.Env...), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("caddy reload %s: %v\n%s", r.file, err, out)
		}
	}
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	served(50)

	// 1. The -next users, same permission sets, new passwords (bcrypt
	// hashes: nats-server reads its environment only at start).
	newEdge, newGW := "new-edge-password-0123456789", "new-gw-prod-password-0123456789"
	users := "  users: [\n"
	if !strings.Contains(conf, users) {
		t.Fatal("nats-server.conf has no users list")
	}
	conf = strings.Replace(conf, users, users+
		fmt.Sprintf("    { user: edge-next, password: %q, permissions: $EDGE }\n", hash(newEdge))+
		fmt.Sprintf("    { user: gw-prod-next, password: %q, permissions: $GW_PROD }\n", hash(newGW)), 1)
	step.Store("nats reload with the -next users")
	write(conf)
	natsReloads = append(natsReloads, time.Now())
	if err := ns.Reload(); err != nil {
		t.Fatalf("nats-server reload with the -next users: %v", err)
	}
	served(50)

	// 2. Gateways first: a gateway process with the -next user beside the
	// old one (both in the queue group), then the old one stopped (it
	// drains the requests it accepted). Then each edge out of the load
	// balancer, reloaded, back in.
	step.Store("gateway roll")
	gwNext, err := startRole(t, roles[1], natsURL, map[string]string{"NEO_NATS_GW_PASSWORD": newGW}, nil,
		append(common, "NEO_NATS_USER_SUFFIX=-next")...)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := ready(t, gwNext, 30*time.Second); st != 200 {
		t.Fatalf("gateway -next: /neo/ready %d %s", st, body)
	}
	// its queue subscription is registered at the server
	for deadline := time.Now().Add(30 * time.Second); ; {
		cz, err := ns.Connz(&server.ConnzOptions{Username: true, Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		subscribed := false
		for _, c := range cz.Conns {
			for _, sub := range c.Subs {
				subscribed = subscribed || c.AuthorizedUser == "gw-prod-next" && strings.HasPrefix(sub, "neo.rt.prod.")
			}
		}
		if subscribed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the -next gateway did not subscribe")
		}
		time.Sleep(20 * time.Millisecond)
	}
	served(50)
	gw.Stop()
	served(50)
	for i, e := range edges {
		step.Store(fmt.Sprintf("edge %d reload", i))
		e.inLB.Store(false)
		for e.inFlight.Load() > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		reload(e.inst, roles[0], "NEO_NATS_USER_SUFFIX=-next", "NEO_NATS_EDGE_PASSWORD="+newEdge)
		if st, body := ready(t, e.inst, 30*time.Second); st != 200 {
			t.Fatalf("edge %d after its reload: /neo/ready %d %s", i, st, body)
		}
		e.inLB.Store(true)
		served(50)
	}
	// the old configs' connections are closed once they drained
	deadline := time.Now().Add(30 * time.Second)
	for {
		cz, err := ns.Connz(&server.ConnzOptions{Username: true})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cz.Conns {
			got = append(got, c.AuthorizedUser)
		}
		slices.Sort(got)
		if strings.Join(got, " ") == "edge-next edge-next gw-prod-next" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS connections of users %v, want the -next users only", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 3. The old users removed.
	for _, line := range []string{"    { user: edge, password: $NEO_NATS_EDGE_PASSWORD, permissions: $EDGE }\n",
		"    { user: gw-prod, password: $NEO_NATS_GW_PROD_PASSWORD, permissions: $GW_PROD }\n"} {
		if !strings.Contains(conf, line) {
			t.Fatalf("nats-server.conf has no line %q", line)
		}
		conf = strings.Replace(conf, line, "", 1)
	}
	step.Store("nats reload without the old users")
	write(conf)
	natsReloads = append(natsReloads, time.Now())
	if err := ns.Reload(); err != nil {
		t.Fatalf("nats-server reload without the old users: %v", err)
	}
	served(100)
	close(stop)
	wg.Wait()

	// nats-server's reload re-authorizes every connection and with it
	// resets the reply grants of allow_responses users (server/client.go,
	// registerUser -> setPermissions): a gateway cannot answer a request
	// it was given just before a reload, and the edge answers 502 after
	// its acknowledgement timeout. Those requests, in flight at the instant
	// of a nats-server reload (at most one per load client), are the only
	// failures allowed; the role reloads and everything between must not
	// fail a single request.
	atReload := map[int]int{}
	for _, f := range failures {
		at := -1
		for i, r := range natsReloads {
			if !f.start.After(r) && !f.end.Before(r) {
				at = i
			}
		}
		if at < 0 || !strings.Contains(f.err, "status 502") {
			t.Fatalf("a request failed outside a nats-server reload (%d of %d failed): %s\nedges:\n%s\n%s\ngateway:\n%s", len(failures), sent.Load(), f.err,
				harness.NotableLogLines(edges[0].inst.Logs(), 20), harness.NotableLogLines(edges[1].inst.Logs(), 20), harness.NotableLogLines(gwNext.Logs(), 20))
		}
		if atReload[at]++; atReload[at] > 2 {
			t.Fatalf("more requests failed at nats-server reload %d than were in flight: %v", at, failures)
		}
	}
	t.Logf("%d requests during the rotation, %d failed in flight at a nats-server reload", sent.Load(), len(failures))

	// The old passwords are refused; the new ones work.
	for _, c := range []struct{ user, pw string }{{"edge", natsPassword("edge")}, {"gw-prod", natsPassword("gw-prod")}} {
		if nc, err := nats.Connect(natsURL, nats.UserInfo(c.user, c.pw), nats.NoReconnect()); err == nil {
			nc.Close()
			t.Fatalf("user %s with its old password connected after the removal", c.user)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("user %s: %v", c.user, err)
		}
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("edge-next", newEdge), nats.NoReconnect())
	if err != nil {
		t.Fatalf("edge-next: %v", err)
	}
	nc.Close()
}
