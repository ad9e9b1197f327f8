package natskv

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// Permission sets documented in docs/registry-kv.md for bucket neo_tenants.
var (
	writerPublish = []string{"$KV.neo_tenants.>", "$JS.API.INFO",
		"$JS.API.STREAM.INFO.KV_neo_tenants", "$JS.API.STREAM.CREATE.KV_neo_tenants", "$JS.API.STREAM.UPDATE.KV_neo_tenants",
		"$JS.API.CONSUMER.CREATE.KV_neo_tenants.>", "$JS.API.CONSUMER.DELETE.KV_neo_tenants.>", "$JS.FC.KV_neo_tenants.>",
		"$JS.API.DIRECT.GET.KV_neo_tenants.>"}
	readerPublish = []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.KV_neo_tenants",
		"$JS.API.CONSUMER.CREATE.KV_neo_tenants.>", "$JS.API.CONSUMER.DELETE.KV_neo_tenants.>", "$JS.FC.KV_neo_tenants.>"}
)

func startJSWithUsers(t *testing.T) *server.Server {
	t.Helper()
	perm := func(pub []string, inbox string) *server.Permissions {
		return &server.Permissions{Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: []string{inbox}}}
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "edge", Password: "pw", Permissions: perm(writerPublish, "_EDGE.>")},
			{Username: "gw", Password: "pw", Permissions: perm(readerPublish, "_GW.prod.>")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func storeAs(t *testing.T, url, user, inbox string, errs *[]string, mu *sync.Mutex) *Store {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, "pw"), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			*errs = append(*errs, user+": "+err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return &Store{Bucket: "neo_tenants", Replicas: 1, HistoryDepth: MaxHistory, Timeout: caddy.Duration(2 * time.Second),
		Node: user, Connection: "default", nc: nc, js: js, logger: zap.NewNop(), mu: new(sync.Mutex)}
}

// TestPermissions checks the documented least-privilege permission sets: a
// writer (edge: bucket creation, writes, watch, history) and a reader (stage
// gateway: load and watch only), each with its own inbox prefix.
func TestPermissions(t *testing.T) {
	srv := startJSWithUsers(t)
	var mu sync.Mutex
	var errs []string
	edge := storeAs(t, srv.ClientURL(), "edge", "_EDGE", &errs, &mu)
	if _, err := edge.Load(); err != nil {
		t.Fatal("edge load (creates the bucket):", err)
	}
	gw := storeAs(t, srv.ClientURL(), "gw", "_GW.prod", &errs, &mu)
	gw.HistoryDepth = 10 // differs from the bucket's; the gateway may not update it
	gw.Timeout = caddy.Duration(200 * time.Millisecond)
	if _, err := gw.Load(); err != nil {
		t.Fatal("gateway load:", err)
	}
	gw.Timeout = caddy.Duration(2 * time.Second)
	changes := make(chan neo.Change, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Watch(ctx, func(c neo.Change) { changes <- c })
	if c := <-changes; !c.Ready {
		t.Fatalf("want ready, got %+v", c)
	}
	if err := edge.PutBy("initech", tenant("10.0.0.1:80"), neo.Author{Actor: "alice"}); err != nil {
		t.Fatal("edge put:", err)
	}
	select {
	case c := <-changes:
		if c.Name != "initech" || c.Tenant == nil {
			t.Fatalf("gateway saw %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway watch saw nothing")
	}
	if err := edge.PutIfUnchanged("initech", tenant("10.0.0.1:80"), tenant("10.0.0.2:80"), neo.Author{Actor: "bob"}); err != nil {
		t.Fatal("edge conditional put:", err)
	}
	if err := edge.DeleteBy("initech", neo.Author{Actor: "bob"}); err != nil {
		t.Fatal("edge delete:", err)
	}
	if h, err := edge.History("initech"); err != nil || len(h) != 3 {
		t.Fatalf("edge history: %v %v", h, err)
	}
	if h, err := gw.History("initech"); err != nil || len(h) != 3 {
		t.Fatalf("gateway history: %v %v", h, err)
	}
	// Fresh stores: the bucket exists; the edge binds to it again.
	if _, err := storeAs(t, srv.ClientURL(), "edge", "_EDGE", &errs, &mu).Load(); err != nil {
		t.Fatal("second edge load:", err)
	}
	// The reader cannot write.
	err := gw.Put("evil", tenant("10.6.6.6:80"))
	if err == nil {
		t.Fatal("gateway write accepted")
	}
	if got, _ := edge.Load(); got["evil"] != nil {
		t.Fatal("gateway write landed")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range errs {
		if !strings.HasPrefix(e, "gw: ") || !strings.Contains(e, `"$KV.neo_tenants.evil"`) && !strings.Contains(e, `"$JS.API.STREAM.UPDATE.KV_neo_tenants"`) {
			t.Errorf("unexpected permission error: %s", e)
		}
	}
	t.Logf("async errors: %v; gateway write: %v", errs, err)
}

// TestBucketReconcile: an existing bucket takes the configured history.
func TestBucketReconcile(t *testing.T) {
	srv := startJS(t, -1, t.TempDir())
	s1, _ := newStore(t, srv.ClientURL(), "node1")
	if _, err := s1.Load(); err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(t, srv.ClientURL(), "node2")
	s2.HistoryDepth = 5
	if _, err := s2.Load(); err != nil {
		t.Fatal(err)
	}
	st, err := s2.kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h := st.History(); h != 5 {
		t.Fatalf("history %d, want 5", h)
	}
}
