package natskv

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/projectneo/caddy-neo/internal/natstest"
	"github.com/projectneo/caddy-neo/modules/neo"
)

// startJS runs a real nats-server with JetStream on the given port (-1: random).
func startJS(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return natstest.Start(t, port, dir)
}

// newStore connects a Store to url, as Provision would, with an observed logger.
func newStore(t testing.TB, url, node string) (*Store, *observer.ObservedLogs) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	s := &Store{Bucket: "neo_tenants", Replicas: 1, HistoryDepth: MaxHistory, Timeout: caddy.Duration(2 * time.Second),
		Node: node, Connection: "default", nc: nc, js: js, logger: zap.New(core), mu: new(sync.Mutex)}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func tenant(addr string) *neo.TenantConfig {
	return &neo.TenantConfig{Apps: map[string]*neo.AppConfig{"crm": {Stages: map[string]*neo.StageConfig{
		"prod": {Replicas: []neo.Replica{{Address: addr, Zone: "az-a"}}}}}}}
}

func replicaOf(tc *neo.TenantConfig) string {
	if tc == nil || tc.Apps["crm"] == nil || tc.Apps["crm"].Stages["prod"] == nil || len(tc.Apps["crm"].Stages["prod"].Replicas) == 0 {
		return ""
	}
	return tc.Apps["crm"].Stages["prod"].Replicas[0].Address
}

func TestStoreLoadPutDeleteHistory(t *testing.T) {
	srv := startJS(t, -1, t.TempDir())
	s1, _ := newStore(t, srv.ClientURL(), "node1")
	s2, logs2 := newStore(t, srv.ClientURL(), "node2")

	if got, err := s1.Load(); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v %v", got, err)
	}
	who := neo.Author{Remote: "127.0.0.1:5555", Actor: "alice", Zone: "az-a"}
	if err := s1.PutBy("initech", tenant("10.0.0.1:80"), who); err != nil {
		t.Fatal(err)
	}
	if err := s1.PutBy("initech", tenant("10.0.0.2:80"), neo.Author{Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Put("globex", tenant("10.0.0.3:80")); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || replicaOf(got["initech"]) != "10.0.0.2:80" || replicaOf(got["globex"]) != "10.0.0.3:80" {
		t.Fatalf("loaded %v", got)
	}
	if err := s2.DeleteBy("globex", neo.Author{Actor: "carol"}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Delete("nobody"); err != nil {
		t.Fatal("deleting an absent tenant:", err)
	}
	got, _ = s1.Load()
	if len(got) != 1 || got["globex"] != nil {
		t.Fatalf("after delete: %v", got)
	}

	h, err := s2.History("initech")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Operation != "PUT" || h[0].Who == nil || h[0].Who.Actor != "alice" ||
		h[0].Who.Remote != "127.0.0.1:5555" || h[0].Who.Node != "node1" || h[0].Who.Zone != "az-a" ||
		replicaOf(h[0].Tenant) != "10.0.0.1:80" || replicaOf(h[1].Tenant) != "10.0.0.2:80" || h[1].Revision <= h[0].Revision {
		t.Fatalf("history %+v", h)
	}
	if time.Since(h[0].When) > time.Minute || time.Since(h[0].Stored) > time.Minute {
		t.Fatalf("history times %v %v", h[0].When, h[0].Stored)
	}
	h, err = s1.History("globex")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[1].Operation != "DEL" || h[1].Who == nil || h[1].Who.Actor != "carol" || h[1].Who.Node != "node2" || h[1].Tenant != nil {
		t.Fatalf("globex history %+v", h)
	}
	if _, err := s1.History("never"); !errors.Is(err, neo.ErrNotFound) {
		t.Fatalf("history of an unknown tenant: %v", err)
	}
	if _, err := s1.History("Bad.Name"); !errors.Is(err, neo.ErrNotFound) {
		t.Fatalf("history of a bad name: %v", err)
	}

	// Names are validated before anything is written.
	for _, bad := range []string{"", "../x", "a.b", "UPPER", "x*", "a>", strings.Repeat("a", 200)} {
		if err := s1.Put(bad, tenant("10.0.0.9:80")); err == nil {
			t.Errorf("put %q accepted", bad)
		}
		if err := s1.Delete(bad); err == nil {
			t.Errorf("delete %q accepted", bad)
		}
	}

	// Bad values written by someone else are skipped with a log line naming
	// the tenant and the reason; good ones still load.
	kv, err := s1.bucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]string{
		"broken":  `{"apps":1}`,
		"garbage": `not json`,
		"Caps":    `{"apps":{}}`,
		"mixed":   `{"op":"put","apps":{}}`,
		"noten":   `{"op":"put"}`,
	} {
		if _, err := kv.Put(context.Background(), key, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(context.Background(), "plain", []byte(`{"apps":{"crm":{"stages":{"prod":{"replicas":[{"address":"10.0.0.7:80"}]}}}}}`)); err != nil {
		t.Fatal(err)
	}
	got, err = s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || replicaOf(got["plain"]) != "10.0.0.7:80" || got["initech"] == nil {
		t.Fatalf("with bad values: %v", got)
	}
	for _, name := range []string{"broken", "garbage", "Caps", "mixed", "noten"} {
		found := false
		for _, e := range logs2.FilterMessage("stored tenant skipped").All() {
			if e.ContextMap()["tenant"] == name && e.ContextMap()["reason"] != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("no log line for bad value %q", name)
		}
	}
	// A bad revision shows in the history with its error.
	h, _ = s1.History("broken")
	if len(h) != 1 || h[0].Error == "" {
		t.Fatalf("history of a bad value: %+v", h)
	}
}

// TestStoreWatch checks the watch: initial values, the Ready marker, then
// puts, deletes, skipped bad values, and survival across a NATS restart.
func TestStoreWatch(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	srv := startJS(t, port, dir)
	s1, _ := newStore(t, srv.ClientURL(), "node1")
	s2, _ := newStore(t, srv.ClientURL(), "node2")
	if err := s1.Put("first", tenant("10.0.0.1:80")); err != nil {
		t.Fatal(err)
	}
	changes := make(chan neo.Change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s2.Watch(ctx, func(c neo.Change) { changes <- c }) }()
	next := func(what string) neo.Change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(20 * time.Second):
			t.Fatalf("no change for %s", what)
		}
		return neo.Change{}
	}
	if c := next("initial"); c.Name != "first" || replicaOf(c.Tenant) != "10.0.0.1:80" {
		t.Fatalf("initial %+v", c)
	}
	if c := next("ready"); !c.Ready {
		t.Fatalf("want ready, got %+v", c)
	}
	kv, _ := s1.bucket(context.Background())
	kv.Put(context.Background(), "broken", []byte(`{"apps":1}`))
	s1.Put("second", tenant("10.0.0.2:80"))
	if c := next("put"); c.Name != "second" || replicaOf(c.Tenant) != "10.0.0.2:80" || c.Revision == 0 {
		t.Fatalf("put %+v (the bad value must be skipped)", c)
	}
	s1.Delete("first")
	if c := next("delete"); c.Name != "first" || c.Tenant != nil {
		t.Fatalf("delete %+v", c)
	}
	kv.Purge(context.Background(), "second")
	if c := next("purge"); c.Name != "second" || c.Tenant != nil {
		t.Fatalf("purge %+v", c)
	}

	// NATS goes down: writes fail at once as unavailable; the watch resumes
	// when the server is back.
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "disconnect", func() bool { return !s1.nc.IsConnected() })
	start := time.Now()
	err := s1.Put("third", tenant("10.0.0.3:80"))
	if !errors.Is(err, neo.ErrStoreUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("put while NATS is down: %v after %v", err, time.Since(start))
	}
	if err := s1.Delete("second"); !errors.Is(err, neo.ErrStoreUnavailable) {
		t.Fatalf("delete while NATS is down: %v", err)
	}
	if _, err := s1.History("second"); !errors.Is(err, neo.ErrStoreUnavailable) {
		t.Fatalf("history while NATS is down: %v", err)
	}
	startJS(t, port, dir)
	waitFor(t, "reconnect", func() bool { return s1.nc.IsConnected() })
	// The first writes after a restart may meet JetStream still recovering.
	waitFor(t, "put after restart", func() bool { return s1.Put("third", tenant("10.0.0.3:80")) == nil })
	t.Logf("put ok after %v", time.Since(start))
	if c := next("put after restart"); c.Name != "third" || replicaOf(c.Tenant) != "10.0.0.3:80" {
		t.Fatalf("after restart %+v", c)
	}
	t.Logf("watch resumed after %v", time.Since(start))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop")
	}
}

// TestPutIfUnchanged: a change made on a stale copy is refused.
func TestPutIfUnchanged(t *testing.T) {
	srv := startJS(t, -1, t.TempDir())
	s1, _ := newStore(t, srv.ClientURL(), "node1")
	s2, _ := newStore(t, srv.ClientURL(), "node2")
	v1, v2, v3 := tenant("10.0.0.1:80"), tenant("10.0.0.2:80"), tenant("10.0.0.3:80")
	if err := s1.PutIfUnchanged("initech", v1, v2, neo.Author{}); !errors.Is(err, neo.ErrConflict) {
		t.Fatalf("absent tenant: %v", err)
	}
	if err := s1.Put("initech", v1); err != nil {
		t.Fatal(err)
	}
	// node 2 changes v1 to v2; node 1, still on v1, tries v1 to v3.
	if err := s2.PutIfUnchanged("initech", v1, v2, neo.Author{Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s1.PutIfUnchanged("initech", v1, v3, neo.Author{Actor: "alice"}); !errors.Is(err, neo.ErrConflict) {
		t.Fatalf("stale copy: %v", err)
	}
	got, _ := s1.Load()
	if replicaOf(got["initech"]) != "10.0.0.2:80" {
		t.Fatalf("after a refused change: %v", got)
	}
	if err := s1.Delete("initech"); err != nil {
		t.Fatal(err)
	}
	if err := s2.PutIfUnchanged("initech", v2, v3, neo.Author{}); !errors.Is(err, neo.ErrConflict) {
		t.Fatalf("deleted tenant: %v", err)
	}
	if err := s1.PutIfUnchanged("../x", v1, v2, neo.Author{}); err == nil || errors.Is(err, neo.ErrConflict) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := Store{Bucket: "b", Replicas: 1, HistoryDepth: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, s := range map[string]Store{
		"bucket":   {Bucket: "a.b", Replicas: 1, HistoryDepth: 1},
		"replicas": {Bucket: "b", Replicas: 6, HistoryDepth: 1},
		"history":  {Bucket: "b", Replicas: 1, HistoryDepth: 65},
		"timeout":  {Bucket: "b", Replicas: 1, HistoryDepth: 1, Timeout: -1},
	} {
		if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
