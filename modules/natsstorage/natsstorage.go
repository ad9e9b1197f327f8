// Package natsstorage provides `caddy.storage.neo_nats`: Caddy's storage (TLS
// certificates, ACME accounts, the internal CA, OCSP staples, distributed rate
// limit states...) in NATS JetStream, shared by every Caddy instance that
// points at the same bucket, with cluster-wide locks so each certificate is
// issued once. See docs/cert-storage.md.
package natsstorage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/projectneo/caddy-neo/modules/natsconn"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(NATS{})
}

// Defaults.
const (
	DefaultBucket    = "neo_certs"
	DefaultLockTTL   = 15 * time.Second
	DefaultInlineMax = 256 << 10
	minLockTTL       = time.Second
)

// NATS is the `caddy.storage.neo_nats` storage module. It keeps every key in the
// JetStream key-value bucket Bucket (history 1), values larger than InlineMax
// in the object store "<bucket>_large" (the KV entry then points at it), and
// locks in the key-value bucket "<bucket>_locks", whose entries expire LockTTL
// after their last refresh, so a lock whose holder died is free again one TTL
// later. Missing buckets are created on first use with Replicas replicas.
//
// It uses the connection Connection of the `nats` app, which must be in the
// same configuration: Caddy provisions storage before the apps, and this
// module provisions the nats app itself when it loads.
type NATS struct {
	// Connection names the nats app connection to use. Default: "default".
	Connection string `json:"connection,omitempty"`
	// Bucket is the key-value bucket; locks and large values use two more
	// buckets named after it ("<bucket>_locks", "<bucket>_large"). Every
	// instance that should share certificates uses the same bucket.
	// Default: "neo_certs".
	Bucket string `json:"bucket,omitempty"`
	// Replicas of each bucket when this module creates it (1 to 5); existing
	// buckets are used as they are. Default: 1 (use 3 in production).
	Replicas int `json:"replicas,omitempty"`
	// LockTTL is how long a lock outlives its last refresh (holders refresh
	// every third of it), so how long issuance waits after a holder dies. It
	// is the lock bucket's TTL, fixed when the bucket is created: the bucket's
	// value wins if they differ. At least 1s. Default: 15s.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`
	// InlineMax is the largest value (bytes) stored in the key-value bucket
	// itself; larger values go to the object store. Above the NATS server's
	// max_payload less 4 KiB it is lowered to that. Default: 262144 (256 KiB).
	InlineMax int `json:"inline_max,omitempty"`

	kv *KV
}

// CaddyModule returns the Caddy module information.
func (NATS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.neo_nats",
		New: func() caddy.Module { return new(NATS) },
	}
}

// Provision fills defaults and takes the connection from the nats app.
func (n *NATS) Provision(ctx caddy.Context) error {
	if n.Connection == "" {
		n.Connection = natsconn.DefaultConnection
	}
	if n.Bucket == "" {
		n.Bucket = DefaultBucket
	}
	if n.Replicas == 0 {
		n.Replicas = 1
	}
	if n.LockTTL == 0 {
		n.LockTTL = caddy.Duration(DefaultLockTTL)
	}
	if n.InlineMax == 0 {
		n.InlineMax = DefaultInlineMax
	}
	if err := n.Validate(); err != nil {
		return err
	}
	// AppIfConfigured, not App: `caddy storage export` loads storage with no
	// configuration at all.
	if _, err := ctx.AppIfConfigured("neo_nats"); err != nil {
		if errors.Is(err, caddy.ErrNotConfigured) {
			return fmt.Errorf("connection: the neo_nats app is not configured; add a neo_nats global option (or \"apps\": {\"neo_nats\": {}}) with connection %q", n.Connection)
		}
		return err
	}
	nc, err := natsconn.Conn(ctx, n.Connection)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("connection %q: jetstream: %w", n.Connection, err)
	}
	log := ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	n.kv = NewKV(js, Settings{
		Bucket:    n.Bucket,
		Replicas:  n.Replicas,
		LockTTL:   time.Duration(n.LockTTL),
		InlineMax: n.InlineMax,
	}, log)
	// Bind the buckets now if the server answers, so a misconfiguration shows
	// at startup (a server without JetStream fails the config); if it does
	// not answer, they are bound on first use.
	bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := n.kv.buckets(bctx); err != nil {
		// no responders: connected, but no server handles the JetStream API
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("connection %q: the NATS server has no JetStream for this account: %w", n.Connection, err)
		}
		log.Warn("nats storage buckets not ready; binding on first use",
			zap.String("bucket", n.Bucket), zap.String("connection", n.Connection), zap.Error(err))
	}
	return nil
}

// Validate checks the configuration.
func (n *NATS) Validate() error {
	if !validBucket(n.Bucket) {
		return fmt.Errorf("bucket: %q: want letters, digits, '-' or '_'", n.Bucket)
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		return fmt.Errorf("replicas: %d: want 1 to 5", n.Replicas)
	}
	if time.Duration(n.LockTTL) < minLockTTL {
		return fmt.Errorf("lock_ttl: %s: want at least %s", time.Duration(n.LockTTL), minLockTTL)
	}
	if n.InlineMax < 1024 {
		return fmt.Errorf("inline_max: %d: want at least 1024 bytes", n.InlineMax)
	}
	return nil
}

// CertMagicStorage returns the storage.
func (n *NATS) CertMagicStorage() (certmagic.Storage, error) {
	if n.kv == nil {
		return nil, errors.New("nats storage not provisioned")
	}
	return n.kv, nil
}

func validBucket(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner          = (*NATS)(nil)
	_ caddy.Validator            = (*NATS)(nil)
	_ caddy.StorageConverter     = (*NATS)(nil)
	_ certmagic.Storage          = (*KV)(nil)
	_ certmagic.TryLocker        = (*KV)(nil)
	_ certmagic.LockLeaseRenewer = (*KV)(nil)
)
