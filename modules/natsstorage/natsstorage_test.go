package natsstorage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats-server/v2/server"
)

func runConfig(t *testing.T, cfgJSON string) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Run(&cfg); err != nil {
		return err
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return nil
}

// The module, provisioned by Caddy, takes its connection from the nats app
// of the same configuration (provisioned before the apps are) and becomes
// Caddy's (and CertMagic's) storage.
func TestModuleProvision(t *testing.T) {
	s := startJetStream(t)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"storage": {"module": "neo_nats", "connection": "certs", "bucket": "prov_certs", "lock_ttl": "3s"},
		"apps": {"neo_nats": {"connections": {"certs": {"servers": [%q]}}}}
	}`, s.ClientURL())
	if err := runConfig(t, cfg); err != nil {
		t.Fatal(err)
	}
	kv, ok := certmagic.Default.Storage.(*KV)
	if !ok {
		t.Fatalf("certmagic default storage is %T", certmagic.Default.Storage)
	}
	ctx := context.Background()
	if err := kv.Store(ctx, "a/b", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// visible to another edge using the bucket directly
	other := newEdge(t, s, Settings{Bucket: "prov_certs"})
	if got, err := other.Load(ctx, "a/b"); string(got) != "v" {
		t.Fatalf("Load from another edge = %q, %v", got, err)
	}
	if other.lockTTL.Seconds() != 3 {
		t.Errorf("lock bucket ttl = %v; want the module's lock_ttl 3s", other.lockTTL)
	}
}

func TestModuleConfigErrors(t *testing.T) {
	s := startJetStream(t)
	natsApp := fmt.Sprintf(`{"neo_nats": {"connections": {"default": {"servers": [%q]}}}}`, s.ClientURL())
	for _, c := range []struct{ name, storage, apps, want string }{
		{"no nats app", `{"module": "neo_nats"}`, `{}`, "neo_nats app is not configured"},
		{"unknown connection", `{"module": "neo_nats", "connection": "nope"}`, natsApp, "unknown nats connection"},
		{"bucket", `{"module": "neo_nats", "bucket": "a.b"}`, natsApp, "bucket"},
		{"replicas", `{"module": "neo_nats", "replicas": 7}`, natsApp, "replicas"},
		{"lock_ttl", `{"module": "neo_nats", "lock_ttl": "100ms"}`, natsApp, "lock_ttl"},
		{"inline_max", `{"module": "neo_nats", "inline_max": 10}`, natsApp, "inline_max"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"admin": {"disabled": true}, "logging": {"logs": {"default": {"level": "ERROR"}}}, "storage": %s, "apps": %s}`, c.storage, c.apps)
			err := runConfig(t, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v; want one containing %q", err, c.want)
			}
		})
	}
}

// A server without JetStream fails the config at load, naming the connection.
func TestModuleNoJetStream(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"storage": {"module": "neo_nats"},
		"apps": {"neo_nats": {"connections": {"default": {"servers": [%q]}}}}
	}`, s.ClientURL())
	err = runConfig(t, cfg)
	if err == nil || !strings.Contains(err.Error(), `connection "default": the NATS server has no JetStream`) {
		t.Fatalf("error = %v; want one naming the connection and JetStream", err)
	}
}

// With the nats app's embedded server (JetStream on), the storage needs no
// external NATS at all: the single-node shape of the local topology.
func TestModuleEmbeddedJetStream(t *testing.T) {
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"storage": {"module": "neo_nats"},
		"apps": {"neo_nats": {"embedded": {"anonymous": true, "jetstream": true, "store_dir": %q}}}
	}`, t.TempDir())
	if err := runConfig(t, cfg); err != nil {
		t.Fatal(err)
	}
	kv, ok := certmagic.Default.Storage.(*KV)
	if !ok {
		t.Fatalf("certmagic default storage is %T", certmagic.Default.Storage)
	}
	ctx := context.Background()
	if err := kv.Store(ctx, "pki/authorities/local/root.crt", []byte("root")); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Load(ctx, "pki/authorities/local/root.crt"); string(got) != "root" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if err := kv.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
}
