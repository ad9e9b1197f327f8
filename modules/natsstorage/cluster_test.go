package natsstorage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster runs a three-node nats-server cluster with JetStream on
// loopback, as production runs one node per zone.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	var ls []net.Listener
	var routes []*url.URL
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: l.Addr().String()})
	}
	for _, l := range ls {
		l.Close()
	}
	var srvs []*server.Server
	for i := range 3 {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20,
			Cluster: server.ClusterOpts{Name: "storage-test", Host: "127.0.0.1", Port: portOf(routes[i])},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready")
		}
	}
	return srvs
}

func portOf(u *url.URL) int {
	var p int
	fmt.Sscanf(u.Port(), "%d", &p)
	return p
}

// firstStore stores key on e, retrying while the cluster's meta group forms
// (a few seconds after start) and the R3 buckets can be made.
func firstStore(t *testing.T, ctx context.Context, e edge, key, value string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := e.Store(sctx, key, []byte(value))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no R3 bucket after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// On a three-replica cluster (where JetStream reports compare-and-set
// conflicts with other error codes than on one server) the storage and its
// locks behave the same, with edges connected to different nodes.
func TestStorageOnClusterR3(t *testing.T) {
	srvs := startCluster(t)
	set := Settings{Replicas: 3, LockTTL: 2 * time.Second}
	a, b := newEdge(t, srvs[0], set), newEdge(t, srvs[2], set)
	ctx := ctxT(t)
	firstStore(t, ctx, a, "certificates/x/x.crt", "r3")
	js, _ := jetstream.New(a.nc)
	for _, name := range []string{"neo_certs", "neo_certs_locks"} {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := kv.Status(ctx)
		if st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
			t.Errorf("%s: replicas %d; want 3", name, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas)
		}
	}
	if got, err := b.Load(ctx, "certificates/x/x.crt"); string(got) != "r3" {
		t.Fatalf("Load on another node = %q, %v", got, err)
	}
	// locks: exclusive, conflicts recognised, release and expiry
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "l"); ok || err != nil {
		t.Fatalf("TryLock of a held lock on R3 = %v, %v; want false, nil", ok, err)
	}
	if err := b.Unlock(ctx, "l"); !errors.Is(err, ErrLockNotHeld) {
		t.Fatalf("Unlock by a non-holder: %v", err)
	}
	if err := a.RenewLockLease(ctx, "l", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	b.nc.Close() // b dies holding it
	died := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Lock(wctx, "l"); err != nil {
		t.Fatalf("lock of a dead holder on R3 not free after %v: %v", time.Since(died), err)
	}
	t.Logf("R3: dead holder's lock acquired after %v (ttl 2s)", time.Since(died))
	if err := a.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "certificates"); err != nil {
		t.Fatalf("Delete on R3: %v", err)
	}
	// Reads of an R3 stream may be answered by a replica that has not yet
	// applied the delete (KV direct gets): it must show within a moment,
	// and a key the delete missed would stay and fail here.
	for deadline := time.Now().Add(5 * time.Second); a.Exists(ctx, "certificates"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Delete on R3: the directory still exists 5s later")
		}
	}
}

// certmagic's Storage contract: Load returns the value of the last Store. On
// an R3 bucket, edges on three different nodes store and at once load and
// stat, and every read must see the write that finished before it (KV's
// direct gets may be answered by a replica that has not applied it yet).
func TestStorageReadYourWritesR3(t *testing.T) {
	srvs := startCluster(t)
	set := Settings{Replicas: 3, LockTTL: 2 * time.Second}
	edges := []edge{newEdge(t, srvs[0], set), newEdge(t, srvs[1], set), newEdge(t, srvs[2], set)}
	ctx := ctxT(t)
	firstStore(t, ctx, edges[0], "certificates/ryw/ryw.crt", "start")
	stale := 0
	const rounds = 300
	for i := range rounds {
		w := edges[i%3]
		want := fmt.Sprintf("v%d", i)
		if err := w.Store(ctx, "certificates/ryw/ryw.crt", []byte(want)); err != nil {
			t.Fatal(err)
		}
		for j, r := range edges {
			got, err := r.Load(ctx, "certificates/ryw/ryw.crt")
			if err != nil || string(got) != want {
				stale++
				if stale <= 5 {
					t.Errorf("round %d: edge %d stored %q, edge %d loaded %q, %v", i, i%3, want, j, got, err)
				}
			}
		}
		if i%10 == 9 {
			// a delete is seen at once too
			if err := w.Delete(ctx, "certificates/ryw/ryw.crt"); err != nil {
				t.Fatal(err)
			}
			for j, r := range edges {
				if _, err := r.Stat(ctx, "certificates/ryw/ryw.crt"); err == nil {
					stale++
					if stale <= 5 {
						t.Errorf("round %d: edge %d deleted the key, edge %d still stats it", i, i%3, j)
					}
				}
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d stale reads in %d rounds", stale, rounds)
	}
}
