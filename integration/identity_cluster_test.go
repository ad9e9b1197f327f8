package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/natstest"
)

// sharedIdentityEdge is an edge whose tenants and identity state live in
// JetStream on natsURL.
func sharedIdentityEdge(t *testing.T, natsURL, kek string, be *identityEdge) *identityEdge {
	o := identityEdgeOpts{
		globals:  "neo_nats {\n\t\tconnection default {\n\t\t\tservers " + natsURL + "\n\t\t}\n\t}",
		store:    "store nats",
		identity: "key_encryption_key {env.NEO_IDENTITY_KEK}\n\t\tstore nats",
		env:      []string{"NEO_IDENTITY_KEK=" + kek},
	}
	if be != nil {
		o.backend = be.backend
	}
	return startIdentityEdge(t, o)
}

// TestIdentitySharedAcrossEdges: two edges share signing keys and sessions
// through JetStream: a token signed on one verifies on the other, a refresh
// token rotated on one and reused on the other revokes the chain on both,
// the keys are stored encrypted, and an edge without the key-encryption key
// does not start.
func TestIdentitySharedAcrossEdges(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	natstest.Start(t, port, filepath.Join(t.TempDir(), "js"))
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	kek := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	a := sharedIdentityEdge(t, natsURL, kek, nil)
	b := sharedIdentityEdge(t, natsURL, kek, a)
	identityTenants(t, a)
	b.waitHost(t, "acme-dev.apps.localhost")
	host := "acme-dev.apps.localhost"

	// Signed in on edge A ...
	ba := a.browserClient(t)
	if r := a.signInForm(t, ba, host, "alice", "alice-password", "/ledger/"); r.status != 303 {
		t.Fatalf("sign-in on edge A: %d %.200q", r.status, r.body)
	}
	var at, rt string
	for _, c := range ba.Jar.Cookies(mustURL(a.url(host, "/"))) {
		switch c.Name {
		case "__Host-neo_at":
			at = c.Value
		case "__Host-neo_rt":
			rt = c.Value
		}
	}
	// ... the access token opens the app through edge B, and both edges
	// publish the same keys.
	if r := b.do(t, nil, "GET", b.url(host, "/ledger/"), nil, "Authorization", "Bearer "+at); r.status != 200 {
		t.Fatalf("edge A's token on edge B: %d", r.status)
	}
	if a.do(t, nil, "GET", a.url(host, "/identity/.well-known/jwks.json"), nil).body != b.do(t, nil, "GET", b.url(host, "/identity/.well-known/jwks.json"), nil).body {
		t.Fatal("the edges publish different keys")
	}
	// Rotated on B, reused on A: revoked everywhere.
	refresh := func(e *identityEdge, tok string) resp {
		return e.postForm(t, nil, e.url(host, "/identity/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}})
	}
	_, rt2 := tokenFromJSON(t, refresh(b, rt))
	if r := refresh(a, rt); r.status != 400 {
		t.Fatalf("reuse on edge A: %d %s", r.status, r.body)
	}
	if r := refresh(b, rt2); r.status != 400 {
		t.Fatalf("the chain's newest token on edge B after a reuse on A: %d %s", r.status, r.body)
	}
	// A browser holding rt in its cookie is not renewed on edge A either.
	if r := a.do(t, nil, "GET", a.url(host, "/ledger/"), nil, "Cookie", "__Host-neo_rt="+rt, "Accept", "text/html"); r.status != 302 {
		t.Fatalf("revoked session renewed on edge A: %d", r.status)
	}

	// The keys bucket holds the keys encrypted.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "neo_identity_keys")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "acme.dev")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte("pkcs8")) || bytes.Contains(e.Value(), []byte("acme.dev.")) {
		t.Fatal("signing keys stored in clear")
	}

	// No key-encryption key: the edge refuses to start, naming the setting.
	ports, _ := harness.FreePorts(3)
	_, err = harness.StartProcess(harness.Options{
		Config: fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	neo_nats {
		connection default {
			servers %s
		}
	}
	import %s/caddyfiles/snippets/identity-global.caddy
}
`, ports[0], ports[1], ports[2], natsURL, harness.RepoRoot()),
		Admin: fmt.Sprintf("127.0.0.1:%d", ports[0]),
	})
	if err == nil || !strings.Contains(err.Error(), "key_encryption_key") {
		t.Fatalf("edge without NEO_IDENTITY_KEK: %v", err)
	}
}

// TestIdentityClusterPermissions: an edge connected as the production
// cluster's `edge` user (caddyfiles/nats/cluster/authorization.conf) keeps
// identity state in JetStream: it creates the buckets, signs in, renews, and
// watches the keys; a stage gateway's user cannot read them.
func TestIdentityClusterPermissions(t *testing.T) {
	dir := t.TempDir()
	auth, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "cluster", "authorization.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"NEO_NATS_EDGE_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD", "NEO_NATS_GW_PROD_PASSWORD", "NEO_NATS_GW_DEV_PASSWORD",
		"NEO_NATS_GW_PROD_ACME_PASSWORD", "NEO_NATS_MONITOR_PASSWORD"} {
		t.Setenv(v, "pw-"+strings.ToLower(v))
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ninclude ./authorization.conf\n", port, filepath.Join(dir, "js"))
	os.WriteFile(filepath.Join(dir, "authorization.conf"), auth, 0o600)
	os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600)
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startNATSServerOpts(t, opts)
	t.Cleanup(srv.Shutdown)
	natsURL := srv.ClientURL()
	e := startIdentityEdge(t, identityEdgeOpts{
		globals:  fmt.Sprintf("neo_nats {\n\t\tconnection default {\n\t\t\tservers %s\n\t\t\tuser edge pw-neo_nats_edge_password\n\t\t\tinbox_prefix _EDGE\n\t\t}\n\t}", natsURL),
		store:    "store nats",
		identity: "key_encryption_key {env.NEO_IDENTITY_KEK}\n\t\tstore nats",
		env:      []string{"NEO_IDENTITY_KEK=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))},
	})
	identityTenants(t, e)
	host := "acme-dev.apps.localhost"
	b := e.browserClient(t)
	if r := e.signInForm(t, b, host, "alice", "alice-password", "/ledger/"); r.status != 303 {
		t.Fatalf("sign-in: %d %.200q", r.status, r.body)
	}
	var rt string
	for _, c := range b.Jar.Cookies(mustURL(e.url(host, "/"))) {
		if c.Name == "__Host-neo_rt" {
			rt = c.Value
		}
	}
	tokenFromJSON(t, e.postForm(t, nil, e.url(host, "/identity/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}))
	if r := e.do(t, nil, "GET", e.url(host, "/identity/.well-known/jwks.json"), nil); r.status != 200 {
		t.Fatalf("jwks: %d", r.status)
	}
	if strings.Contains(e.inst.Logs(), "identity keys watch stopped") {
		t.Fatalf("the keys watch failed under the edge's permissions:\n%s", harness.NotableLogLines(e.inst.Logs(), 20))
	}
	// A stage gateway cannot read identity state.
	nc, err := nats.Connect(natsURL, nats.UserInfo("gw-prod", "pw-neo_nats_gw_prod_password"), nats.CustomInboxPrefix("_GW.prod"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, bucket := range []string{"neo_identity_keys", "neo_identity_sessions"} {
		if kv, err := js.KeyValue(ctx, bucket); err == nil {
			if _, err := kv.Get(ctx, "acme.dev"); err == nil {
				t.Fatalf("a stage gateway reads %s", bucket)
			}
		}
	}
}
