package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// clusterReplica is an app replica of the cluster topology, in the test
// process: it answers JSON naming itself and its zone, after delay, and
// counts the requests in flight. Each stage gateway serves its own zone's
// replica while it is healthy, so the replica's zone names the gateway that
// sent the request.
type clusterReplica struct {
	name, zone, addr string
	delay            time.Duration
	mu               sync.Mutex
	inflight         int
}

func newClusterReplica(t *testing.T, zone string, delay time.Duration) *clusterReplica {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &clusterReplica{name: "demo-orders-" + zone, zone: zone, addr: l.Addr().String(), delay: delay}
	srv := &http.Server{Handler: r}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *clusterReplica) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
	}()
	n, _ := io.Copy(io.Discard, req.Body)
	time.Sleep(r.delay)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"replica":%q,"zone":%q,"tenant":%q,"body_bytes":%d}`, r.name, r.zone, req.Header.Get("Neo-Tenant"), n)
}

// inFlight is how many requests this replica has in flight.
func (r *clusterReplica) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight
}

type clusterAnswer struct {
	Replica, Zone, Tenant string
	BodyBytes             int `json:"body_bytes"`
}

// clusterTopo is the two-zone topology on loopback: a three-node NATS
// cluster with JetStream (in the test process), an edge per zone (az-a,
// az-b) and a prod stage gateway per zone (caddy processes of the real
// binary running caddyfiles/edge.Caddyfile and caddyfiles/stage.Caddyfile
// with the zone's env file, caddyfiles/zones/az-*.env, as shipped), and a
// replica of demo/orders per zone (in the test process).
type clusterTopo struct {
	nats     *harness.Cluster
	replicas map[string]*clusterReplica
	edges    []*harness.Instance // az-a, az-b
	https    []int
	clients  []*http.Client
	gateways map[string]*harness.Instance
}

var clusterZones = []string{"az-a", "az-b"}

func otherZone(z string) string {
	if z == "az-a" {
		return "az-b"
	}
	return "az-a"
}

// clusterOpts vary the cluster topology.
type clusterOpts struct {
	// replicaDelay is how long the replicas take to answer.
	replicaDelay time.Duration
	// natsStore keeps the run-time tenants in the cluster's JetStream KV
	// (NEO_TENANT_STORE=nats), as the zones' env files do; otherwise each
	// node has its own file store.
	natsStore bool
	// natsStorage keeps the edges' certificates in JetStream
	// (NEO_CERT_STORAGE=nats), as the zones' env files do.
	natsStorage bool
}

// zoneEnvFile is the env file of a zone of the three-zone deployment.
func zoneEnvFile(zone string) string {
	return filepath.Join(harness.RepoRoot(), "caddyfiles", "zones", zone+".env")
}

func startClusterTopo(t *testing.T, o clusterOpts) *clusterTopo {
	t.Helper()
	replicaDelay := o.replicaDelay
	ct := &clusterTopo{nats: harness.NATSCluster(t, 3), replicas: map[string]*clusterReplica{}, gateways: map[string]*harness.Instance{}}
	tenant := harness.ClusterTenant{Replicas: map[string]string{}}
	for _, z := range clusterZones {
		ct.replicas[z] = newClusterReplica(t, z, replicaDelay)
		tenant.Replicas[z] = ct.replicas[z].addr
	}
	tenants := t.TempDir()
	if err := os.WriteFile(filepath.Join(tenants, "demo.caddy"), []byte(tenant.Block()), 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(10)
	if err != nil {
		t.Fatal(err)
	}
	// What the zone's env file leaves to the machine: the NATS URLs (here
	// the test cluster's, this zone's node first), loopback addresses,
	// the tenants, the secrets; and for the test, Caddy's internal CA, the
	// *.localhost domains and rate limits above the load it sends. (The
	// process's environment wins over the env file's.)
	env := func(zone string, i int, more ...string) []string {
		urls := append([]string{ct.nats.URLs[i]}, append(append([]string{}, ct.nats.URLs[:i]...), ct.nats.URLs[i+1:]...)...)
		e := []string{"NEO_NATS_URL=" + strings.Join(urls, " "), "NEO_TENANTS=" + tenants, "NEO_STORE_DIR=" + t.TempDir(),
			"NEO_NATS_EDGE_PASSWORD=cluster-edge-password", "NEO_NATS_GW_PASSWORD=cluster-gw-password", "NEO_IDENTITY_KEK=" + testKEK,
			"NEO_BIND=127.0.0.1", "NEO_TLS=internal", "NEO_RL_CLIENT_EVENTS=1000000", "NEO_RL_HOST_EVENTS=1000000", "NEO_JS_REPLICAS=3",
			"NEO_RUNTIME_DOMAIN=apps.localhost", "NEO_PLATFORM_DOMAIN=platform.localhost"}
		if !o.natsStore {
			e = append(e, "NEO_TENANT_STORE=file")
		}
		if !o.natsStorage {
			e = append(e, "NEO_CERT_STORAGE=file")
		}
		return append(e, more...)
	}
	for i, z := range clusterZones {
		admin, stage := ports[i], ports[2+i]
		ct.gateways[z] = harness.Start(t, harness.Options{Config: "caddyfiles/stage.Caddyfile", Args: []string{"--envfile", zoneEnvFile(z)},
			Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
			Env:     env(z, i, fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", admin), fmt.Sprintf("NEO_STAGE_PORT=%d", stage), "NEO_STAGE=prod"),
			WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", stage)}})
	}
	for i, z := range clusterZones {
		admin, https, http := ports[4+i], ports[6+i], ports[8+i]
		inst := harness.Start(t, harness.Options{Config: "caddyfiles/edge.Caddyfile", Args: []string{"--envfile", zoneEnvFile(z)},
			Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
			Env:     env(z, i, fmt.Sprintf("NEO_ADMIN=127.0.0.1:%d", admin), fmt.Sprintf("NEO_HTTPS_PORT=%d", https), fmt.Sprintf("NEO_HTTP_PORT=%d", http)),
			WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", https)}})
		roots, err := inst.RootPool("local")
		if err != nil {
			t.Fatal(err)
		}
		ct.edges = append(ct.edges, inst)
		ct.https = append(ct.https, https)
		ct.clients = append(ct.clients, harness.Client(fmt.Sprintf("127.0.0.1:%d", https), roots))
	}
	for i := range ct.edges {
		if _, err := waitServed(ct.clients[i], ct.url(i, "/orders/ready"), 30*time.Second); err != nil {
			t.Fatalf("edge %s: %v", clusterZones[i], err)
		}
	}
	return ct
}

// url is a URL of the demo tenant's prod stage on edge i.
func (ct *clusterTopo) url(edge int, path string) string {
	return fmt.Sprintf("https://demo.apps.localhost:%d%s", ct.https[edge], path)
}

// waitServed polls url through c until it answers 200, for at most within,
// and returns how long that took. (When tenants live in the NATS KV store,
// a tenant created through one edge's admin API must be served by the other
// edge within 1s: waitServed(otherEdge, url, time.Second).)
func waitServed(c *http.Client, url string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	last := ""
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start), nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Since(start) > within {
			return 0, fmt.Errorf("%s not served within %v (last: %s)", url, within, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ct *clusterTopo) get(t *testing.T, edge int, path string) (int, clusterAnswer) {
	t.Helper()
	resp, err := ct.clients[edge].Get(ct.url(edge, path))
	if err != nil {
		t.Fatalf("GET via edge %s: %v", clusterZones[edge], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a clusterAnswer
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("%v: %q", err, body)
		}
	}
	return resp.StatusCode, a
}

// killNoticeGrace is how long after a process died a request counts as in
// flight on it: a client (edge, gateway) learns that its NATS server died
// only when its connection reports it, and what it publishes until then goes
// to the dead server.
const killNoticeGrace = 250 * time.Millisecond

// TestClusterTwoEdges: two edges (az-a, az-b) on a three-node NATS cluster
// serve the demo tenant through the stage gateways of their own zone; under
// bounded load through both edges, SIGKILL of the az-b gateway and the death
// of the NATS node the az-a edge is connected to fail only requests that were
// in flight at a kill, each within a few seconds (not the 20s head timeout),
// and every request is counted and reported.
func TestClusterTwoEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	ct := startClusterTopo(t, clusterOpts{replicaDelay: 5 * time.Millisecond})

	// (i) both edges serve the tenant, each through its own zone's gateway
	for i, z := range clusterZones {
		code, a := ct.get(t, i, "/orders/hello")
		if code != 200 || a.Tenant != "demo" || a.Zone != z || a.Replica != "demo-orders-"+z {
			t.Fatalf("edge %s: status %d, answer %+v; want 200 from the %s gateway and replica", z, code, a, z)
		}
	}

	// (ii) bounded load through both edges, two kills
	const workers, total = 8, 3000
	type result struct {
		edge       int
		method     string
		status     int
		err        error
		gateway    string
		start, end time.Time
	}
	results := make([]result, total)
	var next, done atomic.Int64
	deadline := time.Now().Add(120 * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			edge := w % 2
			c := ct.clients[edge]
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				r := result{edge: edge, method: "GET", start: time.Now()}
				var req *http.Request
				if i%2 == 1 {
					r.method = "POST"
					req, _ = http.NewRequest("POST", ct.url(edge, "/orders/items"), strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest("GET", ct.url(edge, fmt.Sprintf("/orders/items?n=%d", i)), nil)
				}
				resp, err := c.Do(req)
				if err != nil {
					r.err = err
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.status = resp.StatusCode
					var a clusterAnswer
					if json.Unmarshal(body, &a) == nil {
						r.gateway = a.Zone // the replica of the gateway's zone
					}
				}
				r.end = time.Now()
				results[i] = r
				done.Add(1)
			}
		}()
	}
	waitDone := func(n int64) {
		for done.Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// a kill spans from the signal (or shutdown call) to the process's end
	type kill struct {
		what     string
		at, done time.Time
		inFlight int // requests the killed gateway had in flight at the replicas (gateway kills)
	}
	var kills []kill
	failuresAt := map[int]int{}

	waitDone(total / 3)
	inFlight := ct.replicas["az-b"].inFlight()
	kills = append(kills, kill{what: "stage gateway prod/az-b (SIGKILL)", at: time.Now(), inFlight: inFlight})
	ct.gateways["az-b"].Kill()
	kills[len(kills)-1].done = time.Now()

	waitDone(2 * total / 3)
	// the NATS node with the most of the surviving processes on it (the
	// az-a edge's on a tie)
	clients := []string{"caddy-neo-edge-az-a", "caddy-neo-edge-az-b", "caddy-neo-gateway-prod-az-a"}
	perNode := map[int][]string{}
	for _, name := range clients {
		if n := ct.nats.NodeOf(name); n >= 0 {
			perNode[n] = append(perNode[n], strings.TrimPrefix(name, "caddy-neo-"))
		}
	}
	node := ct.nats.NodeOf(clients[0])
	if node < 0 {
		t.Fatal("the az-a edge's NATS connection is on no node")
	}
	for n, on := range perNode {
		if len(on) > len(perNode[node]) {
			node = n
		}
	}
	onNode := perNode[node]
	kills = append(kills, kill{what: fmt.Sprintf("NATS node n%d (clients: %s)", node+1, strings.Join(onNode, ", ")), at: time.Now()})
	ct.nats.Kill(node)
	kills[len(kills)-1].done = time.Now()
	wg.Wait()

	// count every request
	issued := min(int(next.Load()), total)
	var ok, failed, failedGET, failedPOST int
	var maxFailLatency time.Duration
	viaGateway := map[string][2]int{} // edge az-b's requests by gateway, before/after the gateway kill
	var bad []string
	for i := range issued {
		r := results[i]
		if r.start.IsZero() {
			t.Fatalf("request %d was issued but not recorded", i)
		}
		if r.err == nil && r.status == 200 {
			ok++
			if r.edge == 1 {
				v := viaGateway[r.gateway]
				if r.start.After(kills[0].at) {
					v[1]++
				} else {
					v[0]++
				}
				viaGateway[r.gateway] = v
			}
			continue
		}
		failed++
		if r.method == "GET" {
			failedGET++
		} else {
			failedPOST++
		}
		// a failure is acceptable only for a request in flight at a kill
		// the first kill it was in flight at
		atKill := -1
		for k, kl := range kills {
			if r.start.Before(kl.done.Add(killNoticeGrace)) && r.end.After(kl.at) {
				atKill = k
				maxFailLatency = max(maxFailLatency, r.end.Sub(kl.at))
				break
			}
		}
		desc := fmt.Sprintf("request %d %s via edge %s: status %d err %v, %v long", i, r.method, clusterZones[r.edge], r.status, r.err, r.end.Sub(r.start).Round(time.Millisecond))
		failuresAt[atKill]++
		if atKill < 0 {
			bad = append(bad, desc+": not in flight at any kill")
		} else if r.end.Sub(kills[atKill].at) > 8*time.Second {
			bad = append(bad, desc+": failed slowly (more than 8s after the kill)")
		}
	}
	t.Logf("cluster under load: %d requests issued of %d (%d workers, both edges, GET and POST alternating), %d succeeded, %d failed (%d GET, %d POST)",
		issued, total, workers, ok, failed, failedGET, failedPOST)
	for i, k := range kills {
		t.Logf("kill: %s at +%v (took %v); requests the gateway had in flight at the replicas: %d; failed requests in flight at this kill: %d",
			k.what, k.at.Sub(results[0].start).Round(time.Millisecond), k.done.Sub(k.at).Round(time.Millisecond), k.inFlight, failuresAt[i])
	}
	if failed > 0 {
		t.Logf("slowest failure ended %v after its kill (the head timeout is 20s)", maxFailLatency.Round(time.Millisecond))
	}
	names := make([]string, 0, len(viaGateway))
	for g := range viaGateway {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		t.Logf("edge az-b requests served via gateway %s: %d before the gateway kill, %d after", g, viaGateway[g][0], viaGateway[g][1])
	}
	if issued != total {
		t.Fatalf("only %d of %d requests issued before the time bound", issued, total)
	}
	if ok+failed != issued {
		t.Fatalf("%d succeeded + %d failed != %d issued", ok, failed, issued)
	}
	if len(bad) > 0 {
		t.Fatalf("%d unacceptable failures:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	// each kill can fail at most the requests in flight through the killed
	// process: the az-b gateway only gets the az-b edge's requests (every
	// other worker, its own zone first); the NATS node any worker's
	if failuresAt[0] > workers/2 {
		t.Fatalf("%d failures at the gateway kill, more than the %d requests the az-b edge can have in flight", failuresAt[0], workers/2)
	}
	if failuresAt[1] > workers {
		t.Fatalf("%d failures at the NATS node kill, more than the %d requests in flight", failuresAt[1], workers)
	}
	if v := viaGateway["az-b"]; v[0] == 0 {
		t.Fatalf("edge az-b sent nothing to its own zone's gateway before the kill: %v", viaGateway)
	}
	if v := viaGateway["az-a"]; v[1] == 0 {
		t.Fatalf("edge az-b did not fail over to the az-a gateway: %v", viaGateway)
	}

	// after the kills both edges serve (az-b through the az-a gateway)
	for i := range clusterZones {
		for range 10 {
			if code, a := ct.get(t, i, "/orders/after"); code != 200 || a.Zone != "az-a" {
				t.Fatalf("edge %s after the kills: status %d via the gateway of zone %q, want 200 via az-a", clusterZones[i], code, a.Zone)
			}
		}
	}
}

// TestNATSClusterConfigs: the three-zone NATS node configurations parse,
// form one cluster "neo" with routes to the three nodes, run JetStream with
// replicas spread over distinct az: tags, and keep the production
// permission sets.
func TestNATSClusterConfigs(t *testing.T) {
	for _, v := range []string{"NEO_NATS_EDGE_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD", "NEO_NATS_GW_PROD_PASSWORD", "NEO_NATS_GW_DEV_PASSWORD",
		"NEO_NATS_GW_PROD_ACME_PASSWORD", "NEO_NATS_MONITOR_PASSWORD"} {
		t.Setenv(v, "secret-"+strings.ToLower(v))
	}
	for _, z := range []string{"az-a", "az-b", "az-c"} {
		t.Run(z, func(t *testing.T) {
			path := filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "cluster", "nats-"+z+".conf")
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
			o, err := server.ProcessConfigFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if o.ServerName != "nats-"+z || !o.JetStream || o.JetStreamUniqueTag != "az:" || len(o.Tags) != 1 || o.Tags[0] != "az:"+z {
				t.Fatalf("server_name %q, jetstream %v, unique_tag %q, tags %v", o.ServerName, o.JetStream, o.JetStreamUniqueTag, o.Tags)
			}
			if o.Cluster.Name != "neo" || o.Cluster.Port != 6222 || len(o.Routes) != 3 {
				t.Fatalf("cluster %q port %d, %d routes", o.Cluster.Name, o.Cluster.Port, len(o.Routes))
			}
			users := map[string]*server.User{}
			for _, u := range o.Users {
				users[u.Username] = u
			}
			edge := users["edge"]
			if edge == nil || edge.Password != "secret-neo_nats_edge_password" || edge.Permissions == nil ||
				strings.Join(edge.Permissions.Subscribe.Allow, ",") != "_EDGE.>" {
				t.Fatalf("edge user: %+v", edge)
			}
			// a gateway answers only what it was delivered: no publish
			// right on edge or platform inboxes, responses instead
			if gw := users["gw-prod"]; gw == nil || gw.Permissions == nil || !strings.HasPrefix(strings.Join(gw.Permissions.Publish.Allow, ","), "$JS.API.INFO,") ||
				strings.Contains(strings.Join(gw.Permissions.Publish.Allow, ","), "_EDGE") || strings.Contains(strings.Join(gw.Permissions.Publish.Allow, ","), "_PLATFORM") ||
				gw.Permissions.Response == nil || gw.Permissions.Response.MaxMsgs != 1100 || gw.Permissions.Response.Expires != 2*time.Minute ||
				strings.Join(gw.Permissions.Subscribe.Allow, ",") != "neo.rt.prod.> neo-gateway,_GW.prod.>,$SRV.>" {
				t.Fatalf("gw-prod user: %+v", gw)
			}
		})
	}
}

// TestNATSClusterPermissions runs a nats-server with JetStream and the
// cluster's production authorization.conf, and uses the buckets the way the
// edge (tenant store writer, certificate storage) and a stage gateway (tenant
// store reader) do: what each role needs is allowed, nothing more.
func TestNATSClusterPermissions(t *testing.T) {
	for _, v := range []string{"NEO_NATS_EDGE_PASSWORD", "NEO_NATS_PLATFORM_PASSWORD", "NEO_NATS_GW_PROD_PASSWORD", "NEO_NATS_GW_DEV_PASSWORD",
		"NEO_NATS_GW_PROD_ACME_PASSWORD", "NEO_NATS_MONITOR_PASSWORD"} {
		t.Setenv(v, "pw-"+strings.ToLower(v))
	}
	dir := t.TempDir()
	auth, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "caddyfiles", "nats", "cluster", "authorization.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ninclude ./authorization.conf\n", port, filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "authorization.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startNATSServerOpts(t, opts)
	t.Cleanup(srv.Shutdown)
	connect := func(user, inbox string) jetstream.JetStream {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, "pw-neo_nats_"+strings.ReplaceAll(user, "-", "_")+"_password"), nats.CustomInboxPrefix(inbox))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The edge: writes tenants, keeps certificates, locks and large objects.
	edge := connect("edge", "_EDGE")
	tenants, err := edge.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "neo_tenants", History: 64})
	if err != nil {
		t.Fatalf("edge: tenant bucket: %v", err)
	}
	if _, err := tenants.Put(ctx, "acme", []byte(`{"apps":{}}`)); err != nil {
		t.Fatalf("edge: tenant put: %v", err)
	}
	if _, err := tenants.Get(ctx, "acme"); err != nil {
		t.Fatalf("edge: tenant get: %v", err)
	}
	for _, b := range []string{"neo_certs", "neo_certs_locks"} {
		kv, err := edge.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b})
		if err != nil {
			t.Fatalf("edge: bucket %s: %v", b, err)
		}
		if _, err := kv.Create(ctx, "certificates.x", []byte("pem")); err != nil {
			t.Fatalf("edge: %s create: %v", b, err)
		}
		if e, err := kv.Get(ctx, "certificates.x"); err != nil || string(e.Value()) != "pem" {
			t.Fatalf("edge: %s get: %v", b, err)
		}
	}
	obj, err := edge.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "neo_certs_large"})
	if err != nil {
		t.Fatalf("edge: object store: %v", err)
	}
	if _, err := obj.PutBytes(ctx, "big", make([]byte, 3<<20)); err != nil {
		t.Fatalf("edge: object put: %v", err)
	}
	if b, err := obj.GetBytes(ctx, "big"); err != nil || len(b) != 3<<20 {
		t.Fatalf("edge: object get: %d bytes, %v", len(b), err)
	}

	// A stage gateway: watches the tenants, writes nothing, reads no certificate.
	gw := connect("gw-prod", "_GW.prod")
	ro, err := gw.KeyValue(ctx, "neo_tenants")
	if err != nil {
		t.Fatalf("gateway: tenant bucket: %v", err)
	}
	w, err := ro.WatchAll(ctx)
	if err != nil {
		t.Fatalf("gateway: watch: %v", err)
	}
	defer w.Stop()
	select {
	case e := <-w.Updates():
		if e == nil || e.Key() != "acme" {
			t.Fatalf("gateway: watch gave %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gateway: watch delivered nothing")
	}
	// Refused: each gets its own short deadline (a permission violation
	// leaves the request unanswered), with the edge's context still live.
	refused := func(what string, op func(context.Context) error) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := op(c); err == nil {
			t.Fatalf("gateway: %s was allowed", what)
		}
	}
	refused("a tenant write", func(c context.Context) error { _, err := ro.Put(c, "acme", []byte(`{}`)); return err })
	refused("opening the certificate bucket", func(c context.Context) error { _, err := gw.KeyValue(c, "neo_certs"); return err })
	refused("creating a bucket", func(c context.Context) error {
		_, err := gw.CreateKeyValue(c, jetstream.KeyValueConfig{Bucket: "neo_evil"})
		return err
	})
	if ctx.Err() != nil {
		t.Fatal("the test ran out of time: the refusals above prove nothing")
	}
	if e, err := tenants.Get(ctx, "acme"); err != nil || string(e.Value()) != `{"apps":{}}` {
		t.Fatalf("the gateway's refused write changed the tenant: %v", err)
	}
}

// requireModule skips the test when the caddy binary lacks module id (the
// tests below run by themselves once neo.stores.nats and caddy.storage.neo_nats
// are in the build).
func requireModule(t *testing.T, id string) {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == id {
			return
		}
	}
	t.Skipf("%s is not in the binary yet", id)
}

// TestClusterTenantAcrossEdges: with the tenant registry in the cluster's
// JetStream KV store (replicas 3), a tenant created through the az-a edge's
// admin API is served by the az-b edge (and resolved by the gateways) within
// 1 s.
func TestClusterTenantAcrossEdges(t *testing.T) {
	requireModule(t, "neo.stores.nats")
	ct := startClusterTopo(t, clusterOpts{natsStore: true})
	body := fmt.Sprintf(`{"apps":{"orders":{"public":true,"stages":{"prod":{"replicas":[{"address":%q,"zone":"az-a"},{"address":%q,"zone":"az-b"}]}}}}}`,
		ct.replicas["az-a"].addr, ct.replicas["az-b"].addr)
	start := time.Now()
	if st, out, err := ct.edges[0].Admin("PUT", "/neo/tenants/newco", body); err != nil || st != 201 {
		t.Fatalf("PUT /neo/tenants/newco on edge az-a: %d %s %v", st, out, err)
	}
	url := fmt.Sprintf("https://newco.apps.localhost:%d/orders/x", ct.https[1])
	took, err := waitServed(ct.clients[1], url, time.Second)
	if err != nil {
		t.Fatalf("edge az-b: %v", err)
	}
	t.Logf("tenant created on edge az-a served by edge az-b %v after the PUT was sent (%v after it answered)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	resp, err := ct.clients[1].Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a clusterAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Zone != "az-b" || a.Tenant != "newco" {
		t.Fatalf("answer %+v %v: want tenant newco through the az-b gateway", a, err)
	}
}

// TestClusterCertificateOnce: with the certificates in the cluster's
// JetStream (caddy.storage.neo_nats, replicas 3), both edges use one internal CA
// and the certificate the az-a edge obtained on demand is the one the az-b
// edge serves (one issuance).
func TestClusterCertificateOnce(t *testing.T) {
	requireModule(t, "caddy.storage.neo_nats")
	// startClusterTopo has the az-a edge serve the demo tenant first, then
	// the az-b edge
	ct := startClusterTopo(t, clusterOpts{natsStorage: true})
	var serials []string
	for i := range ct.edges {
		resp, err := ct.clients[i].Get(ct.url(i, "/orders/cert"))
		if err != nil {
			t.Fatalf("edge %s: %v", clusterZones[i], err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
			t.Fatalf("edge %s: no TLS certificate", clusterZones[i])
		}
		serials = append(serials, resp.TLS.PeerCertificates[0].SerialNumber.String())
	}
	if serials[0] != serials[1] {
		t.Fatalf("edges serve different certificates for demo.apps.localhost (serials %s, %s): issued twice", serials[0], serials[1])
	}
}
