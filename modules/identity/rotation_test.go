package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// provisionedApp is an App whose state is set up as Provision sets it up,
// with kek and, when not nil, the previous key-encryption key prev.
func provisionedApp(t testing.TB, c *clock, keys, sess kv, kek, prev []byte) *App {
	t.Helper()
	a := &App{Algorithm: string(jose.ES256), AccessTokenLifetime: caddy.Duration(5 * time.Minute),
		SessionLifetime: caddy.Duration(12 * time.Hour), KeyRotation: caddy.Duration(time.Hour), RefreshReuseGrace: caddy.Duration(10 * time.Second)}
	a.now = c.Now
	a.logger = zap.NewNop()
	if prev != nil {
		a.kekPrev = "set"
	}
	if err := a.initState(keys, sess, kek, prev, time.Second); err != nil {
		t.Fatal(err)
	}
	a.dummyPW = dummyHash()
	return a
}

// TestKEKRotationOverlap: an edge restarted with a new key-encryption key
// and the old one as previous keeps the signed-in users in: their access
// tokens verify, their refresh tokens renew (onto tokens of the new key),
// and the stored signing keys are re-sealed with the new key, so that once
// it has run the previous key can be removed. Without the previous key, the
// stored keys do not open and the config is refused, naming the variable.
func TestKEKRotationOverlap(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	keys, sess := newMemKV(0), newMemKV(0)
	oldKEK, newKEK := kek(t), kek(t)
	before := provisionedApp(t, c, keys, sess, oldKEK, nil)
	at := sign(t, before, "acme", "dev")
	sign(t, before, "acme", "prod")
	_, rt, err := before.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(*session) error { return nil }

	// The new key alone opens nothing: the config is refused, naming the
	// variable, rather than failing every sign-in.
	alone := provisionedApp(t, c, keys, sess, newKEK, nil)
	alone.KeyEncryptionKey = "{env.NEO_IDENTITY_KEK}"
	alone.Store = &StoreConfig{KeysBucket: "neo_identity_keys"}
	if err := alone.checkSealed(context.Background()); err == nil || !strings.Contains(err.Error(), "NEO_IDENTITY_KEK") || !strings.Contains(err.Error(), "key_encryption_key_previous") {
		t.Fatalf("new key without the previous: %v", err)
	}
	if _, _, err := alone.sessions.refresh(rt, 0, ok); err == nil {
		t.Fatal("a refresh token of the old key renewed without the previous key")
	}

	after := provisionedApp(t, c, keys, sess, newKEK, oldKEK)
	after.KeyEncryptionKey, after.Store = "{env.NEO_IDENTITY_KEK}", &StoreConfig{KeysBucket: "neo_identity_keys"}
	if err := after.checkSealed(context.Background()); err != nil {
		t.Fatalf("new key with the previous: %v", err)
	}
	if _, err := after.validate(at); err != nil {
		t.Fatalf("access token signed before the rotation: %v", err)
	}
	_, rt2, err := after.sessions.refresh(rt, 0, ok)
	if err != nil || rt2 == "" {
		t.Fatalf("refresh token of the old key: %v", err)
	}
	// The renewed token is the new key's: it works without the previous.
	if _, _, ok := alone.sessions.parseRefresh(rt2); !ok {
		t.Fatal("the renewed refresh token is not made with the new key")
	}
	// The sweep re-seals what is left (acme.prod; acme.dev was re-sealed
	// when it was read).
	n, left, err := after.keys.sweep(context.Background())
	if err != nil || len(left) != 0 {
		t.Fatalf("sweep: %d %v %v", n, left, err)
	}
	if got := after.keys.resealed.Load(); got != 2 {
		t.Fatalf("re-sealed %d key sets, want 2", got)
	}
	// Now the new key alone reads every key set: the previous can go.
	gone := provisionedApp(t, c, keys, sess, newKEK, nil)
	gone.KeyEncryptionKey, gone.Store = "{env.NEO_IDENTITY_KEK}", &StoreConfig{KeysBucket: "neo_identity_keys"}
	if err := gone.checkSealed(context.Background()); err != nil {
		t.Fatalf("after the sweep, without the previous key: %v", err)
	}
	if _, err := gone.validate(at); err != nil {
		t.Fatalf("access token after the previous key was removed: %v", err)
	}
	if _, _, err := gone.sessions.refresh(rt2, 0, ok); err != nil {
		t.Fatalf("renewed session after the previous key was removed: %v", err)
	}
	// and the old key reads nothing any more.
	if _, err := provisionedApp(t, c, keys, sess, oldKEK, nil).keys.load(realmKey("acme", "prod")); !errors.Is(err, errSealedElsewhere) {
		t.Fatalf("the old key still opens the re-sealed keys: %v", err)
	}
}

// TestKEKPreviousValidate: the previous key is checked like the current
// one, and the error names its variable.
func TestKEKPreviousValidate(t *testing.T) {
	cur := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	for _, tc := range []struct{ name, prev, want string }{
		{"short", "abc", "NEO_IDENTITY_KEK_PREVIOUS"},
		{"known default", "local-topology-only-signing-key-change-me", "publicly known default"},
		{"equals current", cur, "equals key_encryption_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NEO_IDENTITY_KEK", cur)
			t.Setenv("NEO_IDENTITY_KEK_PREVIOUS", tc.prev)
			a := &App{KeyEncryptionKey: "{env.NEO_IDENTITY_KEK}", KeyEncryptionKeyPrevious: "{env.NEO_IDENTITY_KEK_PREVIOUS}",
				Algorithm: "ES256", AccessTokenLifetime: caddy.Duration(time.Minute), SessionLifetime: caddy.Duration(time.Hour), KeyRotation: caddy.Duration(time.Hour)}
			a.kek = caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKey, "")
			a.kekPrev = caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKeyPrevious, "")
			err := a.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "key_encryption_key_previous") {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	t.Run("unset is none", func(t *testing.T) {
		t.Setenv("NEO_IDENTITY_KEK", cur)
		a := &App{KeyEncryptionKey: "{env.NEO_IDENTITY_KEK}", KeyEncryptionKeyPrevious: "{env.NEO_IDENTITY_KEK_PREVIOUS_UNSET}",
			Algorithm: "ES256", AccessTokenLifetime: caddy.Duration(time.Minute), SessionLifetime: caddy.Duration(time.Hour), KeyRotation: caddy.Duration(time.Hour)}
		a.kek = caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKey, "")
		a.kekPrev = caddy.NewReplacer().ReplaceKnown(a.KeyEncryptionKeyPrevious, "")
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKeyRotateAndRetireNow: a rotation by hand signs with a new key at
// once while tokens of the previous key verify for the overlap; retiring
// refuses them at once, also when they were verified (and cached) before.
func TestKeyRotateAndRetireNow(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := provisionedApp(t, c, newMemKV(0), newMemKV(0), kek(t), nil)
	realm := realmKey("acme", "dev")
	old := sign(t, a, "acme", "dev")
	if _, err := a.validate(old); err != nil {
		t.Fatal(err)
	}
	k, err := a.keys.change(realm, rotateNow)
	if err != nil {
		t.Fatal(err)
	}
	next := sign(t, a, "acme", "dev")
	if kidOf(t, next) != k.kid || k.kid == kidOf(t, old) {
		t.Fatalf("after a rotation by hand: signs with %s, rotated to %s, old %s", kidOf(t, next), k.kid, kidOf(t, old))
	}
	if _, err := a.keys.verify(old, c.Now()); err != nil {
		t.Fatalf("old token during the overlap: %v", err)
	}
	info, err := a.keys.describe(realm)
	if err != nil || len(info) != 2 || !info[0].Signing || info[1].VerifiesUntil.IsZero() {
		t.Fatalf("describe: %+v %v", info, err)
	}
	// Retired now: refused at once, though cached.
	if _, err := a.keys.change(realm, retireNow); err != nil {
		t.Fatal(err)
	}
	if _, err := a.validate(old); err == nil {
		t.Fatal("token of a retired key accepted (from the cache)")
	}
	if _, err := a.validate(next); err != nil {
		t.Fatalf("token of the signing key after retire: %v", err)
	}
}

// TestKeysAdminPath: the admin API's paths.
func TestKeysAdminPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/neo/identity/acme/dev/rotate":    true,
		"/neo/identity/acme/platform/keys": true,
		"/neo/identity/acme/dev/retire":    true,
		"/neo/identity/acme/dev/rotate/":   false,
		"/neo/identity/acme//rotate":       false,
		"/neo/identity/ACME/dev/rotate":    false,
		"/neo/identity/acme/dev/delete":    false,
		"/neo/identity/acme/../rotate":     false,
		"/neo/identity/-a/dev/keys":        false,
	} {
		if _, _, _, ok := keysPath(p); ok != want {
			t.Errorf("%s: %v, want %v", p, ok, want)
		}
	}
	// Without a running app the API answers 503, without a panic.
	rec := httptest.NewRecorder()
	err := serveKeysAdmin(rec, httptest.NewRequest(http.MethodPost, "/neo/identity/acme/dev/rotate", nil))
	var ae caddy.APIError
	if current.Load() == nil && (!errors.As(err, &ae) || ae.HTTPStatus != http.StatusServiceUnavailable) {
		t.Fatalf("no app: %v", err)
	}
}

func FuzzKeysAdminPath(f *testing.F) {
	for _, s := range []string{"/neo/identity/acme/dev/rotate", "/neo/identity/a/b/keys", "/neo/identity/%2e/x/retire", "/neo/identity///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tenant, realm, op, ok := keysPath(p)
		if !ok {
			return
		}
		if !label(tenant) || !label(realm) || strings.ContainsAny(tenant+realm, "/.%") || (op != "keys" && op != "rotate" && op != "retire") {
			t.Fatalf("%q accepted as %q %q %q", p, tenant, realm, op)
		}
	})
}
