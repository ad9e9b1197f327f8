package natsstorage

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// edgePermissions returns the least NATS permissions an edge needs for the
// storage on bucket, with the connection's inbox prefix inbox (docs/cert-storage.md
// lists them for nats-server.conf).
func edgePermissions(bucket, inbox string) *server.Permissions {
	var pub []string
	pub = append(pub, "$JS.API.INFO")
	for _, stream := range []string{"KV_" + bucket, "KV_" + bucket + "_locks", "OBJ_" + bucket + "_large"} {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.STREAM.CREATE."+stream,
			"$JS.API.STREAM.MSG.GET."+stream,
			"$JS.API.STREAM.PURGE."+stream,
			"$JS.API.DIRECT.GET."+stream+".>",
			"$JS.API.CONSUMER.*."+stream,
			"$JS.API.CONSUMER.*."+stream+".>",
			"$JS.FC."+stream+".>",
		)
	}
	pub = append(pub, "$KV."+bucket+".>", "$KV."+bucket+"_locks.>", "$O."+bucket+"_large.>")
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox + ".>"}},
	}
}

// The whole contract works for an edge user confined to the permissions
// documented in docs/cert-storage.md, and those permissions keep it out of
// other buckets.
func TestLeastPermissions(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "edge", Password: "pw", Permissions: edgePermissions("neo_certs", "_EDGE")},
			{Username: "admin", Password: "pw"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)

	var mu sync.Mutex
	var violations []string
	connect := func() *KV {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("edge", "pw"), nats.CustomInboxPrefix("_EDGE"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				mu.Lock()
				violations = append(violations, err.Error())
				mu.Unlock()
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return NewKV(js, Settings{LockTTL: 2 * time.Second, InlineMax: 1024}, nil)
	}
	a, b := connect(), connect()
	ctx := ctxT(t)

	big := bytes.Repeat([]byte("0123456789"), 300<<10)
	steps := []struct {
		name string
		run  func() error
	}{
		{"store", func() error { return a.Store(ctx, "certificates/x/a.crt", []byte("a")) }},
		{"store large", func() error { return a.Store(ctx, "certificates/x/big", big) }},
		{"load", func() error {
			v, err := b.Load(ctx, "certificates/x/big")
			if err == nil && !bytes.Equal(v, big) {
				err = errors.New("wrong value")
			}
			return err
		}},
		{"stat", func() error { _, err := b.Stat(ctx, "certificates/x"); return err }},
		{"list", func() error { _, err := b.List(ctx, "certificates", true); return err }},
		{"lock", func() error { return a.Lock(ctx, "l") }},
		{"wait for lock", func() error {
			done := make(chan error, 1)
			go func() { done <- b.Lock(ctx, "l") }()
			if err := a.RenewLockLease(ctx, "l", time.Second); err != nil { // as the keeper does
				return err
			}
			if err := a.Unlock(ctx, "l"); err != nil {
				return err
			}
			if err := <-done; err != nil {
				return err
			}
			return b.Unlock(ctx, "l")
		}},
		{"shrink large", func() error { return a.Store(ctx, "certificates/x/big", []byte("small")) }},
		{"delete", func() error { return b.Delete(ctx, "certificates") }},
	}
	for _, st := range steps {
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("permission violations:\n%s", strings.Join(violations, "\n"))
	}

	// the same permissions do not reach another bucket
	other := connect()
	other.set.Bucket = "tenants"
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := other.Store(cctx, "k", []byte("v")); err == nil {
		t.Error("edge permissions allowed another bucket")
	}
}
