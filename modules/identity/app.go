package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/natsconn"
	"github.com/projectneo/caddy-neo/modules/neo"
	"github.com/projectneo/caddy-neo/modules/secrets"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `neo_identity` app: the identity service of the edge. It signs
// access tokens with per-realm keys (one realm per tenant stage, and one for
// the tenant's Platform members), rotates them, keeps sign-in sessions with
// rotating refresh tokens, and serves the handlers neo_signin (the
// /identity/ endpoints on every tenant host) and neo_identity (the check in
// front of private apps and Platform APIs). Users, providers and API clients
// are tenant data in the `neo` registry (neo.IdentityConfig).
//
// State (signing keys, sessions) lives in JetStream KV with `store nats`,
// shared by every edge; signing keys are encrypted there with a key derived
// from KeyEncryptionKey, which has no default: an edge with a shared store
// and no key refuses to start. Without a store the state is in this
// process's memory: one edge only, and restarting it ends every session
// (config reloads keep it).
type App struct {
	// KeyEncryptionKey encrypts the signing keys in the shared store: at
	// least 32 bytes, given as base64 or as a string of at least 32
	// characters (for example `{$NEO_IDENTITY_KEK}`). Required with a
	// store; no default.
	KeyEncryptionKey string `json:"key_encryption_key,omitempty"`
	// KeyEncryptionKeyPrevious is the key-encryption key being rotated
	// out (for example `{env.NEO_IDENTITY_KEK_PREVIOUS}`). It only
	// decrypts: signing keys found sealed with it are sealed again with
	// KeyEncryptionKey, and refresh tokens and sign-in cookies made with it
	// are still accepted (renewal replaces them). Remove it once every edge
	// runs with the new key and has logged "identity key sets re-sealed"
	// with `left: 0`. Same format as KeyEncryptionKey; refused when it is a
	// published default or equals KeyEncryptionKey; empty (an unset
	// variable) means none. Default: none.
	KeyEncryptionKeyPrevious string `json:"key_encryption_key_previous,omitempty"`
	// Store keeps keys and sessions in JetStream KV. Default: this
	// process's memory (a single edge).
	Store *StoreConfig `json:"store,omitempty"`
	// Algorithm signs access tokens: ES256 or EdDSA. Default: ES256.
	Algorithm string `json:"algorithm,omitempty"`
	// AccessTokenLifetime is how long an access token is valid. Default: 5m.
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`
	// SessionLifetime is how long a sign-in lasts (its refresh tokens stop
	// working after it). Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// KeyRotation is how long a realm's signing key signs before a new one
	// takes over; the old one keeps verifying for AccessTokenLifetime + 1m.
	// Default: 24h.
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`
	// RefreshReuseGrace lets a browser's parallel requests renew with the
	// refresh token another of them just replaced (they get an access token,
	// not a new refresh token). Only for renewals from the session cookie;
	// POST /identity/token never allows reuse. 0 disables. Default: 10s.
	RefreshReuseGrace caddy.Duration `json:"refresh_reuse_grace,omitempty"`

	kek      string
	kekPrev  string
	prevMAC  []byte // the cookie key of the previous key-encryption key
	keys     *keyring
	sessions *sessions
	cache    *tokenCache
	macKey   []byte
	logger   *zap.Logger
	poolKey  string
	cancel   context.CancelFunc
	now      func() time.Time
	oidc     *oidcClients
	dummyPW  []byte
}

// StoreConfig is where identity state is shared between edges.
type StoreConfig struct {
	// Connection is the neo_nats connection. Default: "default".
	Connection string `json:"connection,omitempty"`
	// KeysBucket holds the realms' signing keys (encrypted). Default: neo_identity_keys.
	KeysBucket string `json:"keys_bucket,omitempty"`
	// SessionsBucket holds sessions and refresh-token chains; values expire
	// after SessionLifetime. Default: neo_identity_sessions.
	SessionsBucket string `json:"sessions_bucket,omitempty"`
	// Replicas of both buckets (1 to 5). Default: 1.
	Replicas int `json:"replicas,omitempty"`
	// Timeout bounds each store call. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "neo_identity", New: func() caddy.Module { return new(App) }}
}

// memState is the in-memory state of an edge without a store, kept across
// config reloads.
type memState struct {
	keys, sessions *memKV
	kek            []byte
}

func (m *memState) Destruct() error { return nil }

var states = caddy.NewUsagePool()

// current is the running app (the admin API's key operations use it).
var current atomic.Pointer[App]

// Provision fills defaults and opens the state store.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	// the required secrets first (neo_secrets): a missing key is refused
	// naming its variable
	if err := secrets.CheckFirst(ctx); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.Algorithm == "" {
		a.Algorithm = string(jose.ES256)
	}
	if a.AccessTokenLifetime == 0 {
		a.AccessTokenLifetime = caddy.Duration(5 * time.Minute)
	}
	if a.SessionLifetime == 0 {
		a.SessionLifetime = caddy.Duration(12 * time.Hour)
	}
	if a.KeyRotation == 0 {
		a.KeyRotation = caddy.Duration(24 * time.Hour)
	}
	if a.RefreshReuseGrace == 0 {
		a.RefreshReuseGrace = caddy.Duration(10 * time.Second)
	} else if a.RefreshReuseGrace < 0 {
		a.RefreshReuseGrace = 0
	}
	if s := a.Store; s != nil {
		if s.Connection == "" {
			s.Connection = natsconn.DefaultConnection
		}
		if s.KeysBucket == "" {
			s.KeysBucket = "neo_identity_keys"
		}
		if s.SessionsBucket == "" {
			s.SessionsBucket = "neo_identity_sessions"
		}
		if s.Replicas == 0 {
			s.Replicas = 1
		}
		if s.Timeout == 0 {
			s.Timeout = caddy.Duration(5 * time.Second)
		}
	}
	// {env.NEO_IDENTITY_KEK} keeps the key out of the config JSON (which
	// the admin API serves); {$NEO_IDENTITY_KEK} would put it there.
	a.kek = caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKey, "")
	a.kekPrev = strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKeyPrevious, ""))
	if err := a.Validate(); err != nil {
		return err
	}
	timeout := 5 * time.Second
	var keysKV, sessKV kv
	var kek []byte
	if a.Store == nil {
		a.poolKey = "memory"
		v, _, err := states.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
			k := make([]byte, 32)
			_, _ = rand.Read(k)
			return &memState{keys: newMemKV(0), sessions: newMemKV(time.Duration(a.SessionLifetime)), kek: k}, nil
		})
		if err != nil {
			return err
		}
		ms := v.(*memState)
		keysKV, sessKV, kek = ms.keys, ms.sessions, ms.kek
		if a.kek != "" {
			kek, _ = decodeKEK(a.kek)
		}
	} else {
		kek, _ = decodeKEK(a.kek)
		timeout = time.Duration(a.Store.Timeout)
		nc, err := natsconn.Conn(ctx, a.Store.Connection)
		if err != nil {
			return fmt.Errorf("store.connection: %w", err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		k, err := openBucket(octx, nc, a.Store.KeysBucket, a.Store.Replicas, 0)
		if err != nil {
			return fmt.Errorf("store.keys_bucket: %w", err)
		}
		s, err := openBucket(octx, nc, a.Store.SessionsBucket, a.Store.Replicas, time.Duration(a.SessionLifetime))
		if err != nil {
			return fmt.Errorf("store.sessions_bucket: %w", err)
		}
		keysKV, sessKV = k, s
	}
	var prev []byte
	if a.kekPrev != "" {
		prev, _ = decodeKEK(a.kekPrev)
	}
	if err := a.initState(keysKV, sessKV, kek, prev, timeout); err != nil {
		return err
	}
	if a.Store != nil {
		if err := a.checkSealed(ctx); err != nil {
			return err
		}
	}
	a.oidc = newOIDCClients(a.logger)
	a.dummyPW = dummyHash()
	return nil
}

// initState sets up the keyring, sessions and cookie keys on the stores,
// keyed by the key-encryption key kek; prev, when not nil, is the previous
// key-encryption key (it only decrypts and verifies).
func (a *App) initState(keysKV, sessKV kv, kek, prev []byte, timeout time.Duration) error {
	seal, err := newSealer(kek)
	if err != nil {
		return err
	}
	a.macKey = deriveKey(kek, "caddy-neo identity cookies v1")
	a.sessions = &sessions{store: sessKV, timeout: timeout, now: a.now, macKey: deriveKey(kek, "caddy-neo identity refresh tokens v1")}
	if prev != nil {
		ps, err := newSealer(prev)
		if err != nil {
			return err
		}
		seal = seal.withPrevious(ps)
		a.prevMAC = deriveKey(prev, "caddy-neo identity cookies v1")
		a.sessions.prevMAC = deriveKey(prev, "caddy-neo identity refresh tokens v1")
	}
	a.cache = newTokenCache()
	a.keys = &keyring{store: keysKV, seal: seal, alg: jose.SignatureAlgorithm(a.Algorithm),
		rotation: time.Duration(a.KeyRotation), overlap: time.Duration(a.AccessTokenLifetime) + time.Minute, now: a.now, timeout: timeout,
		dropped: a.cache.reset}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	switch a.Algorithm {
	case string(jose.ES256), string(jose.EdDSA):
	default:
		return fmt.Errorf("algorithm: %q: want ES256 or EdDSA", a.Algorithm)
	}
	if a.AccessTokenLifetime < caddy.Duration(30*time.Second) || a.AccessTokenLifetime > caddy.Duration(time.Hour) {
		return fmt.Errorf("access_token_lifetime: %s: want 30s to 1h", time.Duration(a.AccessTokenLifetime))
	}
	if a.SessionLifetime < a.AccessTokenLifetime {
		return errors.New("session_lifetime: must be at least access_token_lifetime")
	}
	if a.KeyRotation < caddy.Duration(time.Minute) {
		return errors.New("key_rotation: at least 1m")
	}
	if a.KeyEncryptionKey != "" && a.kek == "" {
		// Configured, but its placeholder is empty: fail closed rather
		// than run without the key the operator meant to give.
		return fmt.Errorf("key_encryption_key: %s is empty; set it to 32 or more random bytes, base64", a.KeyEncryptionKey)
	}
	if a.kekPrev != "" {
		prev, err := decodeKEK(a.kekPrev)
		if err != nil {
			return fmt.Errorf("key_encryption_key_previous (%s): %w", varName(a.KeyEncryptionKeyPrevious), err)
		}
		if secrets.IsKnownDefault(a.kekPrev) {
			return fmt.Errorf("key_encryption_key_previous (%s): is a publicly known default; it cannot have protected anything", varName(a.KeyEncryptionKeyPrevious))
		}
		if cur, err := decodeKEK(a.kek); err == nil && string(cur) == string(prev) {
			return fmt.Errorf("key_encryption_key_previous (%s): equals key_encryption_key (%s): give the key being rotated out, or nothing", varName(a.KeyEncryptionKeyPrevious), varName(a.KeyEncryptionKey))
		}
	}
	if a.kek != "" || a.Store != nil {
		if _, err := decodeKEK(a.kek); err != nil {
			if a.Store != nil && a.kek == "" {
				return errors.New("key_encryption_key: required with a store (signing keys are shared encrypted through JetStream); set it to 32 or more random bytes, base64, for example from NEO_IDENTITY_KEK")
			}
			return err
		}
	}
	if s := a.Store; s != nil {
		if s.Replicas < 1 || s.Replicas > 5 {
			return fmt.Errorf("store.replicas: %d: want 1 to 5", s.Replicas)
		}
		if s.KeysBucket == s.SessionsBucket {
			return errors.New("store: keys_bucket and sessions_bucket must differ")
		}
	}
	return nil
}

// decodeKEK reads a key-encryption key: base64 of at least 32 bytes, or a
// string of at least 32 characters.
func decodeKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) >= 32 {
			return b, nil
		}
	}
	if len(s) >= 32 {
		return []byte(s), nil
	}
	return nil, errors.New("key_encryption_key: want at least 32 bytes (base64) or 32 characters")
}

// varName names the environment variable a setting reads ({env.X} or
// {$X} as adapted), or the setting itself.
func varName(setting string) string {
	s := strings.TrimSpace(setting)
	if v, ok := strings.CutPrefix(s, "{env."); ok && strings.HasSuffix(v, "}") {
		return strings.TrimSuffix(v, "}")
	}
	if v, ok := strings.CutPrefix(s, "{$"); ok && strings.HasSuffix(v, "}") {
		v, _, _ = strings.Cut(strings.TrimSuffix(v, "}"), ":")
		return v
	}
	return "the configured value"
}

// sealedSample is how many stored key sets checkSealed opens at load.
const sealedSample = 8

// checkSealed opens a few of the stored key sets: when they were sealed
// with a key-encryption key this config does not have, the config is
// refused naming the variable, instead of every sign-in failing later.
func (a *App) checkSealed(ctx context.Context) error {
	lister, ok := a.keys.store.(keyLister)
	if !ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	names, err := lister.Keys(cctx)
	if err != nil {
		return fmt.Errorf("store.keys_bucket: listing the signing keys: %w", err)
	}
	for i, realm := range names {
		if i == sealedSample {
			break
		}
		data, rev, err := a.keys.store.Get(cctx, realm)
		if errors.Is(err, errNoKey) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store.keys_bucket: reading %s: %w", realm, err)
		}
		if _, _, err := a.keys.decode(realm, data, rev); errors.Is(err, errSealedElsewhere) {
			msg := fmt.Sprintf("key_encryption_key: the signing keys in bucket %s (realm %s) were sealed with another key-encryption key than %s",
				a.Store.KeysBucket, realm, varName(a.KeyEncryptionKey))
			if a.kekPrev != "" {
				msg += " and " + varName(a.KeyEncryptionKeyPrevious)
			}
			a.logger.Error("config refused: identity signing keys sealed with another key", zap.String("realm", realm))
			return errors.New(msg + "; while rotating it, give the key they were sealed with as key_encryption_key_previous (NEO_IDENTITY_KEK_PREVIOUS in the role files) until they are re-sealed")
		}
	}
	return nil
}

// Start watches the shared keys bucket, so keys other edges rotate are
// used at once, and re-seals key sets still sealed with the previous
// key-encryption key.
func (a *App) Start() error {
	current.Store(a)
	w, ok := a.keys.store.(*natsKV)
	if !ok {
		if a.kekPrev != "" {
			a.resealAll(context.Background())
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if a.kekPrev != "" {
		go a.resealAll(ctx)
	}
	go func() {
		for ctx.Err() == nil {
			err := w.Watch(ctx, a.keys.applyWatched)
			if ctx.Err() != nil {
				return
			}
			a.logger.Warn("identity keys watch stopped; restarting", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return nil
}

// resealAll re-seals every key set still sealed with the previous
// key-encryption key and logs the count.
func (a *App) resealAll(ctx context.Context) {
	n, left, err := a.keys.sweep(ctx)
	if err != nil {
		a.logger.Error("identity key sets: re-sealing with the current key_encryption_key failed; it is retried at the next config load", zap.Int("resealed", n), zap.Error(err))
		return
	}
	// left: realms whose keys open with neither key, or changed meanwhile
	// (the next config load tries again)
	a.logger.Info("identity key sets re-sealed", zap.Int("resealed", n), zap.Int("left", len(left)), zap.Strings("realms_left", left))
}

// Stop stops the watch.
func (a *App) Stop() error {
	current.CompareAndSwap(a, nil)
	if a.cancel != nil {
		a.cancel()
	}
	return nil
}

// Cleanup releases the in-memory state (kept while a config uses it).
func (a *App) Cleanup() error {
	if a.poolKey != "" {
		_, _ = states.Delete(a.poolKey)
	}
	return nil
}

// registry returns the current tenant registry snapshot.
func registry() (*neo.Snapshot, bool) {
	na := neo.Current()
	if na == nil {
		return nil, false
	}
	return na.Registry().Snapshot(), true
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
