package natsstorage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/projectneo/caddy-neo/internal/natstest"
)

// startJetStream runs a real nats-server with JetStream on a random loopback port.
func startJetStream(t testing.TB) *server.Server {
	t.Helper()
	return natstest.Start(t, -1, t.TempDir())
}

// edge is one storage with its own connection, as a Caddy instance has.
type edge struct {
	nc *nats.Conn
	*KV
}

func newEdge(t testing.TB, s *server.Server, set Settings) edge {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return edge{nc: nc, KV: NewKV(js, set, nil)}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStorageContract(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{})
	b := newEdge(t, s, Settings{}) // a second edge sees what the first stores
	ctx := ctxT(t)

	files := map[string]string{
		"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.crt":                     "crt",
		"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.key":                     "key",
		"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.json":                    "{}",
		"certificates/acme-v02.api.letsencrypt.org-directory/wildcard_.example.com/wildcard_.example.com.crt": "w",
		"certificates/local/shop.acme.localhost/shop.acme.localhost.crt":                                      "local",
		"pki/authorities/local/root.crt":    "root",
		"ocsp/example.com-1234":             "staple",
		"weird/a.b=c d*>ü/%2F":              "escaped",
		"rate_limit/instances/0b3c.rlstate": "",
	}
	for k, v := range files {
		if err := a.Store(ctx, k, []byte(v)); err != nil {
			t.Fatalf("Store(%q): %v", k, err)
		}
	}

	t.Run("load", func(t *testing.T) {
		for k, v := range files {
			got, err := b.Load(ctx, k)
			if err != nil || string(got) != v {
				t.Errorf("Load(%q) = %q, %v; want %q", k, got, err, v)
			}
		}
	})
	t.Run("load missing", func(t *testing.T) {
		for _, k := range []string{"nope", "certificates", "certificates/local/shop.acme.localhost/shop.acme.localhost"} {
			if _, err := b.Load(ctx, k); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(%q) error = %v; want fs.ErrNotExist", k, err)
			}
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		k := "ocsp/example.com-1234"
		if err := b.Store(ctx, k, []byte("staple2")); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.Load(ctx, k); string(got) != "staple2" {
			t.Errorf("after overwrite Load = %q", got)
		}
		files[k] = "staple2"
	})
	t.Run("stat", func(t *testing.T) {
		for _, c := range []struct {
			key      string
			terminal bool
			size     int64
			missing  bool
		}{
			{key: "pki/authorities/local/root.crt", terminal: true, size: 4},
			{key: "pki/authorities/local", terminal: false},
			{key: "pki", terminal: false},
			{key: "certificates/local", terminal: false},
			{key: "pki/authorities/loc", missing: true},
			{key: "nothing/here", missing: true},
		} {
			ki, err := b.Stat(ctx, c.key)
			if c.missing {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Stat(%q) error = %v; want fs.ErrNotExist", c.key, err)
				}
				if b.Exists(ctx, c.key) {
					t.Errorf("Exists(%q) = true", c.key)
				}
				continue
			}
			if err != nil {
				t.Errorf("Stat(%q): %v", c.key, err)
				continue
			}
			if ki.Key != c.key || ki.IsTerminal != c.terminal || (c.terminal && ki.Size != c.size) {
				t.Errorf("Stat(%q) = %+v", c.key, ki)
			}
			if c.terminal && time.Since(ki.Modified) > time.Minute {
				t.Errorf("Stat(%q).Modified = %v", c.key, ki.Modified)
			}
			if !b.Exists(ctx, c.key) {
				t.Errorf("Exists(%q) = false", c.key)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		for _, c := range []struct {
			prefix    string
			recursive bool
			want      []string
		}{
			{"certificates", false, []string{"certificates/acme-v02.api.letsencrypt.org-directory", "certificates/local"}},
			{"certificates/local", true, []string{
				"certificates/local/shop.acme.localhost",
				"certificates/local/shop.acme.localhost/shop.acme.localhost.crt"}},
			{"certificates/acme-v02.api.letsencrypt.org-directory/example.com", false, []string{
				"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.crt",
				"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.json",
				"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.key"}},
			{"pki", true, []string{"pki/authorities", "pki/authorities/local", "pki/authorities/local/root.crt"}},
			{"rate_limit/instances", false, []string{"rate_limit/instances/0b3c.rlstate"}},
			{"weird", true, []string{"weird/a.b=c d*>ü", "weird/a.b=c d*>ü/%2F"}},
			{"", false, []string{"certificates", "ocsp", "pki", "rate_limit", "weird"}},
			{"pki/authorities/local/root.crt", true, []string{}}, // a file: nothing under it
		} {
			got, err := b.List(ctx, c.prefix, c.recursive)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("List(%q, %v) = %q, %v; want %q", c.prefix, c.recursive, got, err, c.want)
			}
		}
		if _, err := b.List(ctx, "nothing/here", true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List(missing) error = %v; want fs.ErrNotExist", err)
		}
		// "pki" is not a prefix of "pkix/..." on segment boundaries
		if err := a.Store(ctx, "pkix/x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.List(ctx, "pki", false); !reflect.DeepEqual(got, []string{"pki/authorities"}) {
			t.Errorf("List(pki) = %q", got)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := b.Delete(ctx, "certificates/local/shop.acme.localhost/shop.acme.localhost.crt"); err != nil {
			t.Fatal(err)
		}
		if a.Exists(ctx, "certificates/local/shop.acme.localhost/shop.acme.localhost.crt") || a.Exists(ctx, "certificates/local") {
			t.Error("deleted file (and its now empty directory) still exist")
		}
		// a directory: everything under it
		if err := b.Delete(ctx, "certificates/acme-v02.api.letsencrypt.org-directory"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.List(ctx, "certificates", true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List after deleting the directory: %v", err)
		}
		if _, err := a.Load(ctx, "pki/authorities/local/root.crt"); err != nil {
			t.Errorf("Delete removed a key outside the directory: %v", err)
		}
		// missing keys: no error
		for _, k := range []string{"certificates/acme-v02.api.letsencrypt.org-directory", "never/was"} {
			if err := b.Delete(ctx, k); err != nil {
				t.Errorf("Delete(%q) of a missing key: %v", k, err)
			}
		}
		// deleted then stored again
		if err := a.Store(ctx, "certificates/local/x/x.crt", []byte("again")); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Load(ctx, "certificates/local/x/x.crt"); string(got) != "again" {
			t.Errorf("Load after re-store = %q, %v", got, err)
		}
	})
	t.Run("empty key", func(t *testing.T) {
		if err := a.Store(ctx, "", []byte("x")); err == nil {
			t.Error("Store of an empty key succeeded")
		}
		if err := a.Delete(ctx, "/"); err == nil {
			t.Error("Delete of the root succeeded")
		}
	})
}

// Values over InlineMax (here also over the server's 1 MiB max_payload) go to
// the object store; values that look like pointers are stored as objects too.
func TestLargeValues(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{InlineMax: 1024})
	b := newEdge(t, s, Settings{InlineMax: 1024})
	ctx := ctxT(t)

	big := make([]byte, 3<<20)
	rand.Read(big)
	tricky := append(append([]byte{}, pointerMagic...), []byte(`{"object":"other","size":1}`)...)
	for _, c := range []struct {
		name  string
		value []byte
	}{
		{"3 MiB", big},
		{"exactly inline_max", bytes.Repeat([]byte("x"), 1024)},
		{"pointer look-alike", tricky},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := a.Store(ctx, "big/"+c.name, c.value); err != nil {
				t.Fatal(err)
			}
			got, err := b.Load(ctx, "big/"+c.name)
			if err != nil || !bytes.Equal(got, c.value) {
				t.Fatalf("Load: %d bytes, %v; want %d bytes", len(got), err, len(c.value))
			}
			ki, err := b.Stat(ctx, "big/"+c.name)
			if err != nil || ki.Size != int64(len(c.value)) {
				t.Errorf("Stat = %+v, %v", ki, err)
			}
		})
	}
	bk, err := a.buckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := encodeKey("big/3 MiB")
	// replaced by a small value: the object goes away
	if err := a.Store(ctx, "big/3 MiB", []byte("small")); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Load(ctx, "big/3 MiB"); string(got) != "small" {
		t.Errorf("Load after shrinking = %q", got)
	}
	if _, err := bk.objs.GetInfo(ctx, enc); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("object of a replaced large value: %v; want not found", err)
	}
	// deleting a large value deletes its object
	if err := a.Store(ctx, "big/again", big); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	enc, _ = encodeKey("big/again")
	if _, err := bk.objs.GetInfo(ctx, enc); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("object of a deleted large value: %v; want not found", err)
	}
	if b.Exists(ctx, "big") {
		t.Error("big still exists")
	}
}

// An inline_max above the server's max_payload is lowered to fit it.
func TestInlineMaxAboveMaxPayload(t *testing.T) {
	s := startJetStream(t) // max_payload 1 MiB
	a := newEdge(t, s, Settings{InlineMax: 8 << 20})
	ctx := ctxT(t)
	v := bytes.Repeat([]byte("z"), 1500<<10)
	if err := a.Store(ctx, "k", v); err != nil {
		t.Fatalf("Store of 1.5 MiB with inline_max 8 MiB: %v", err)
	}
	if got, err := a.Load(ctx, "k"); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("Load: %d bytes, %v", len(got), err)
	}
}

func TestBucketsCreatedWithSettings(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{Bucket: "certs_test", LockTTL: 7 * time.Second})
	ctx := ctxT(t)
	if err := a.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(a.nc)
	locks, err := js.KeyValue(ctx, "certs_test_locks")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := locks.Status(ctx)
	if st.TTL() != 7*time.Second {
		t.Errorf("lock bucket ttl = %v; want 7s", st.TTL())
	}
	if _, err := js.KeyValue(ctx, "certs_test"); err != nil {
		t.Error(err)
	}
	// an edge configured with another TTL uses the bucket's
	b := newEdge(t, s, Settings{Bucket: "certs_test", LockTTL: 2 * time.Second})
	if _, err := b.buckets(ctx); err != nil {
		t.Fatal(err)
	}
	if b.lockTTL != 7*time.Second {
		t.Errorf("second edge lock ttl = %v; want the bucket's 7s", b.lockTTL)
	}
	if !strings.HasPrefix(a.String(), "nats:") {
		t.Error(a.String())
	}
}

// The internal CA's root is created once: a second, different root from
// another instance is refused; the same bytes again are fine; other keys,
// including the CA's intermediate, are overwritten as usual.
func TestCARootCreatedOnce(t *testing.T) {
	s := startJetStream(t)
	a, b := newEdge(t, s, Settings{}), newEdge(t, s, Settings{})
	ctx := ctxT(t)
	for _, k := range []string{"pki/authorities/local/root.crt", "pki/authorities/local/root.key", "pki/authorities/other/root.crt"} {
		if err := a.Store(ctx, k, []byte("first")); err != nil {
			t.Fatal(err)
		}
		if err := a.Store(ctx, k, []byte("first")); err != nil {
			t.Errorf("%s: storing the same root again: %v", k, err)
		}
		if err := b.Store(ctx, k, []byte("second")); !errors.Is(err, ErrCARootExists) {
			t.Errorf("%s: second root stored: %v; want ErrCARootExists", k, err)
		}
		if got, _ := b.Load(ctx, k); string(got) != "first" {
			t.Errorf("%s = %q; want the first root", k, got)
		}
	}
	for _, k := range []string{"pki/authorities/local/intermediate.crt", "pki/authorities/local/root.crt.bak", "x/pki/authorities/local/root.crt"} {
		if err := a.Store(ctx, k, []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := b.Store(ctx, k, []byte("2")); err != nil {
			t.Errorf("%s: overwrite refused: %v", k, err)
		}
	}
	// deleted (by an operator), a root can be created again
	if err := a.Delete(ctx, "pki/authorities/local"); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, "pki/authorities/local/root.crt", []byte("new")); err != nil {
		t.Errorf("root after delete: %v", err)
	}
}
