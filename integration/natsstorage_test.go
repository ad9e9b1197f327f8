package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/natstest"
	"github.com/projectneo/caddy-neo/modules/natsstorage"
)

// startJetStreamServer runs a nats-server with JetStream on a random loopback
// port and returns its URL and a storage client on the given bucket.
func startJetStreamServer(t *testing.T, bucket string) (string, *natsstorage.KV) {
	t.Helper()
	s := natstest.Start(t, -1, t.TempDir())
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return s.ClientURL(), natsstorage.NewKV(js, natsstorage.Settings{Bucket: bucket}, nil)
}

// storageNode is one caddy process using `storage neo_nats`.
type storageNode struct {
	*harness.Instance
	https, http int
}

func startStorageNode(t *testing.T, name, natsURL, bucket, sites string) storageNode {
	t.Helper()
	o, n := storageNodeOptions(t, name, natsURL, bucket, sites)
	n.Instance = harness.Start(t, o)
	return n
}

func storageNodeOptions(t *testing.T, name, natsURL, bucket, sites string) (harness.Options, storageNode) {
	t.Helper()
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	skip_install_trust
	auto_https disable_redirects
	order rate_limit before respond
	neo_nats {
		connection default {
			servers %s
			name %s
		}
	}
	storage neo_nats {
		bucket %s
		lock_ttl 5s
	}
}
%s
`, ports[0], ports[1], ports[2], natsURL, name, bucket, strings.ReplaceAll(sites, "NODE", name))
	return harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", ports[0])}, storageNode{http: ports[1], https: ports[2]}
}

// leaf returns the certificate node presents for serverName.
func (n storageNode) leaf(t *testing.T, serverName string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", n.https), &tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// Two Caddy processes (separate data directories) on one NATS storage share
// the internal CA and every certificate: a certificate issued by one is served
// by the other, and a name asked for on both at once is issued once.
func TestNATSStorageSharedCertificates(t *testing.T) {
	natsURL, store := startJetStreamServer(t, "it_certs")
	sites := `
https://static.storage.localhost {
	tls internal
	respond "NODE static"
}
https:// {
	tls internal {
		on_demand
	}
	respond "NODE {host}"
}
`
	// The first node creates the CA and the static site's certificate.
	n1 := startStorageNode(t, "node1", natsURL, "it_certs", sites)
	roots, err := n1.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	c1 := harness.Client(fmt.Sprintf("127.0.0.1:%d", n1.https), roots)
	if err := harness.WaitServing(c1, "https://static.storage.localhost/", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range []string{
		"pki/authorities/local/root.crt", "pki/authorities/local/root.key",
		"certificates/local/static.storage.localhost/static.storage.localhost.crt",
	} {
		if !store.Exists(ctx, k) {
			t.Fatalf("%s not in the NATS bucket", k)
		}
	}

	// The second node loads the CA and the certificate from NATS.
	n2 := startStorageNode(t, "node2", natsURL, "it_certs", sites)
	roots2, err := n2.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	if !roots2.Equal(roots) {
		t.Fatal("the second node has another root CA")
	}
	c2 := harness.Client(fmt.Sprintf("127.0.0.1:%d", n2.https), roots)
	if err := harness.WaitServing(c2, "https://static.storage.localhost/", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	l1, l2 := n1.leaf(t, "static.storage.localhost", roots), n2.leaf(t, "static.storage.localhost", roots)
	if l1.SerialNumber.Cmp(l2.SerialNumber) != 0 {
		t.Fatalf("static site: node1 serves serial %x, node2 %x; want the same certificate", l1.SerialNumber, l2.SerialNumber)
	}
	if got := obtainedCount(n1.Logs(), "static.storage.localhost"); got != 1 {
		t.Fatalf("static certificate obtained %d times by node1; want 1", got)
	}
	if got := obtainedCount(n2.Logs(), "static.storage.localhost"); got != 0 {
		t.Fatalf("static certificate obtained again by node2 (%d times); want it loaded from NATS", got)
	}

	// On demand: both nodes are asked for new names at the same moment; the
	// lock in NATS lets one issue, the other waits and loads the result.
	names := []string{"od1.storage.localhost", "od2.storage.localhost", "od3.storage.localhost"}
	var wg sync.WaitGroup
	serials := make(chan string, 4*len(names))
	errs := make(chan error, 4*len(names))
	for _, name := range names {
		for _, n := range []storageNode{n1, n2, n1, n2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := &net.Dialer{Timeout: 30 * time.Second}
				conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", n.https), &tls.Config{ServerName: name, RootCAs: roots})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
				serials <- name + " " + conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
				conn.Close()
			}()
		}
	}
	wg.Wait()
	close(serials)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	perName := map[string]map[string]bool{}
	for s := range serials {
		name, serial, _ := strings.Cut(s, " ")
		if perName[name] == nil {
			perName[name] = map[string]bool{}
		}
		perName[name][serial] = true
	}
	logs := n1.Logs() + n2.Logs()
	for _, name := range names {
		if len(perName[name]) != 1 {
			t.Errorf("%s: %d different certificates served; want 1", name, len(perName[name]))
		}
		if obtained := obtainedCount(logs, name); obtained != 1 {
			t.Errorf("%s: obtained %d times across the two nodes; want 1", name, obtained)
		}
	}
	if testing.Verbose() {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "od1.storage") && (strings.Contains(line, "lock") || strings.Contains(line, "obtain") || strings.Contains(line, "storage")) {
				t.Log(line)
			}
		}
	}
	// And a request gets an answer from each node.
	for i, c := range []*http.Client{c1, c2} {
		resp, err := c.Get("https://od1.storage.localhost/")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("node%d od1.storage.localhost", i+1); b.String() != want {
			t.Errorf("node%d answered %q; want %q", i+1, b.String(), want)
		}
	}

	// A config reload makes a new storage (here with another lock_ttl) on
	// the same pooled connection: node2 still issues into NATS, once.
	status, cfgJSON, err := n2.Admin("GET", "/config/", nil)
	if err != nil || status != 200 {
		t.Fatalf("GET /config/: %d %v", status, err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["storage"].(map[string]any)["lock_ttl"] = "6s"
	if status, body, err := n2.Admin("POST", "/load", cfg); err != nil || status != 200 {
		t.Fatalf("POST /load: %d %s %v", status, body, err)
	}
	if !strings.Contains(n2.Logs(), "lock bucket exists with another ttl") {
		t.Error("no new storage after the reload (its lock_ttl warning is missing)")
	}
	after := n2.leaf(t, "od4.storage.localhost", roots)
	if got := obtainedCount(n2.Logs(), "od4.storage.localhost"); got != 1 {
		t.Errorf("od4 obtained %d times by node2 after the reload; want 1", got)
	}
	if l := n1.leaf(t, "od4.storage.localhost", roots); l.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Errorf("od4: node1 serves serial %x, node2 %x", l.SerialNumber, after.SerialNumber)
	}
	if got := obtainedCount(n1.Logs(), "od4.storage.localhost"); got != 0 {
		t.Errorf("od4 obtained again by node1 (%d times); want it loaded from NATS", got)
	}
}

// Edges started together on empty storage each find no CA and make a root;
// the storage lets the first root in and refuses the others, so an edge
// either starts with the shared root or fails to start (and loads the shared
// root when started again): never two edges serving from different roots.
func TestNATSStorageCARootRace(t *testing.T) {
	natsURL, store := startJetStreamServer(t, "it_race")
	sites := `
https://race.storage.localhost {
	tls internal
	respond "NODE"
}
`
	const nodes = 3
	type result struct {
		opts harness.Options
		node storageNode
		err  error
	}
	results := make([]result, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		results[i].opts, results[i].node = storageNodeOptions(t, fmt.Sprintf("node%d", i+1), natsURL, "it_race", sites)
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, err := harness.StartProcess(results[i].opts)
			results[i].node.Instance, results[i].err = inst, err
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err == nil {
			t.Cleanup(r.node.Stop) // every started node, also when a check below fails
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rootPEM, err := store.Load(ctx, "pki/authorities/local/root.crt")
	if err != nil {
		t.Fatalf("no root in storage: %v", err)
	}
	shared := x509.NewCertPool()
	shared.AppendCertsFromPEM(rootPEM)
	failed := 0
	for i, r := range results {
		if r.err == nil {
			// started: it serves from the shared root, or it exited just
			// after its admin API answered
			c := harness.Client(fmt.Sprintf("127.0.0.1:%d", r.node.https), shared)
			if err := harness.WaitServing(c, "https://race.storage.localhost/", 30*time.Second); err == nil {
				continue
			}
			if !r.node.Exited() {
				t.Fatalf("node%d runs but does not serve from the shared root:\n%s", i+1, r.node.Logs())
			}
			r.err = fmt.Errorf("exited:\n%s", r.node.Logs())
		}
		failed++
		msg := r.err.Error()
		// (Caddy's pki app reads a certificate, then its key: a node can also
		// read the winner's between its two writes)
		if !strings.Contains(msg, "created this CA's root first") && !strings.Contains(msg, "loading root key") && !strings.Contains(msg, "loading intermediate key") {
			t.Fatalf("node%d failed to start for another reason: %v", i+1, r.err)
		}
		// started again, it loads the shared root
		o, n := storageNodeOptions(t, fmt.Sprintf("node%d-again", i+1), natsURL, "it_race", sites)
		n.Instance = harness.Start(t, o)
		c := harness.Client(fmt.Sprintf("127.0.0.1:%d", n.https), shared)
		if err := harness.WaitServing(c, "https://race.storage.localhost/", 30*time.Second); err != nil {
			t.Fatalf("node%d started again does not serve from the shared root: %v", i+1, err)
		}
	}
	t.Logf("%d of %d edges started together lost the race for the CA root and were started again", failed, nodes)
}

// obtainedCount counts the "certificate obtained successfully" log lines for name.
func obtainedCount(logs, name string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "certificate obtained successfully") && strings.Contains(line, `"identifier":"`+name+`"`) {
			n++
		}
	}
	return n
}

// rlState mirrors caddy-ratelimit's stored state (gob matches by field name).
type rlState struct {
	Timestamp time.Time
	Zones     map[string]map[string]struct {
		Count       int
		OldestEvent time.Time
	}
}

// instanceStates reads every instance's rate-limit state from the bucket.
func instanceStates(t *testing.T, store *natsstorage.KV) map[string]rlState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := store.List(ctx, "rate_limit/instances", false)
	if err != nil {
		return nil
	}
	out := map[string]rlState{}
	for _, k := range keys {
		v, err := store.Load(ctx, k)
		if err != nil {
			continue
		}
		var st rlState
		if err := gob.NewDecoder(bytes.NewReader(v)).Decode(&st); err != nil {
			t.Fatalf("decoding %s: %v", k, err)
		}
		out[path.Base(k)] = st
	}
	return out
}

// Distributed rate limiting (caddy-ratelimit's `distributed`) on the NATS
// storage: once the nodes have synced, the limit holds across them; within
// one sync interval each node only knows its own count.
func TestNATSStorageDistributedRateLimit(t *testing.T) {
	natsURL, store := startJetStreamServer(t, "it_rl")
	const limit = 20
	const interval = 100 * time.Millisecond
	sites := fmt.Sprintf(`
http://127.0.0.1 {
	rate_limit {
		distributed {
			read_interval %[2]s
			write_interval %[2]s
		}
		zone shared {
			key {http.request.header.X-RL-Key}
			events %[1]d
			window 1m
		}
	}
	respond "NODE"
}
`, limit, interval)
	n1 := startStorageNode(t, "node1", natsURL, "it_rl", sites)
	n2 := startStorageNode(t, "node2", natsURL, "it_rl", sites)
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(n storageNode, key string, count int) (ok, limited int) {
		for range count {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", n.http), nil)
			req.Header.Set("X-RL-Key", key)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err) // (may run in a goroutine: no Fatal)
				return ok, limited
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Errorf("status %d", resp.StatusCode)
				return ok, limited
			}
		}
		return ok, limited
	}
	// waitSynced waits until the nodes' stored states add up to total for key
	// and then until every node has written again three intervals later (so
	// its sync loop, which also reads every interval, has read them since).
	waitSynced := func(key string, total int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var seen time.Time
		for {
			states := instanceStates(t, store)
			sum := 0
			oldest := time.Now().Add(time.Hour)
			for _, st := range states {
				sum += st.Zones["shared"][key].Count
				if st.Timestamp.Before(oldest) {
					oldest = st.Timestamp
				}
			}
			if len(states) == 2 && sum == total && seen.IsZero() {
				seen = time.Now() // the same clock as the nodes'
			}
			if !seen.IsZero() && oldest.After(seen.Add(3*interval)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("rate limit states not synced (want total %d for %s): %+v", total, key, states)
			}
			time.Sleep(interval / 2)
		}
	}

	// Synced: 15 on node1, then node2 allows only the 5 left, then node1 none.
	if ok, _ := send(n1, "a", 15); ok != 15 {
		t.Fatalf("node1 allowed %d of 15 (limit %d)", ok, limit)
	}
	waitSynced("a", 15)
	if ok, limited := send(n2, "a", 10); ok != limit-15 || limited != 10-(limit-15) {
		t.Fatalf("node2 after sync: %d allowed, %d limited; want %d allowed (global limit %d, 15 used on node1)", ok, limited, limit-15, limit)
	}
	waitSynced("a", limit)
	if ok, _ := send(n1, "a", 5); ok != 0 {
		t.Fatalf("node1 allowed %d after the global limit was used up on both nodes", ok)
	}

	// Within one sync interval: a burst split across both nodes at once. Each
	// node counts only its own requests until the next sync, so up to
	// nodes x limit pass; this is the accuracy documented in docs/cert-storage.md.
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for _, n := range []storageNode{n1, n2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _ := send(n, "burst", limit)
			mu.Lock()
			allowed += ok
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("burst of %d requests per node at once (sync every %v): %d allowed for a global limit of %d", limit, interval, allowed, limit)
}
