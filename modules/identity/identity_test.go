package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func kek(t testing.TB) []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// testApp is an App with in-memory state, as Provision makes it without a store.
func testApp(t testing.TB, c *clock, keys, sess kv, secret []byte) *App {
	t.Helper()
	a := &App{Algorithm: string(jose.ES256), AccessTokenLifetime: caddy.Duration(5 * time.Minute),
		SessionLifetime: caddy.Duration(12 * time.Hour), KeyRotation: caddy.Duration(time.Hour), RefreshReuseGrace: caddy.Duration(10 * time.Second)}
	a.now = c.Now
	seal, err := newSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	a.keys = &keyring{store: keys, seal: seal, alg: jose.ES256, rotation: time.Hour, overlap: 6 * time.Minute, now: c.Now, timeout: time.Second}
	a.sessions = &sessions{store: sess, timeout: time.Second, now: c.Now, macKey: deriveKey(secret, "refresh")}
	a.cache = newTokenCache()
	a.macKey = deriveKey(secret, "cookies")
	a.dummyPW = dummyHash()
	return a
}

func claimsFor(a *App, tenant, realm string) *Claims {
	now := a.now()
	return &Claims{Issuer: "https://x/identity", Subject: "alice", Audience: audience(tenant, realm), IssuedAt: now.Unix(),
		NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), Tenant: tenant, Realm: realm}
}

func sign(t testing.TB, a *App, tenant, realm string) string {
	t.Helper()
	tok, err := a.keys.sign(claimsFor(a, tenant, realm))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func kidOf(t testing.TB, tok string) string {
	h, _, _ := strings.Cut(tok, ".")
	data, _ := base64.RawURLEncoding.DecodeString(h)
	var hdr jwtHeader
	if err := json.Unmarshal(data, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

func TestTokenBoundToRealm(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testApp(t, c, newMemKV(0), newMemKV(0), kek(t))
	tok := sign(t, a, "acme", "dev")
	v, err := a.keys.verify(tok, c.Now())
	if err != nil || v.claims.Tenant != "acme" || v.claims.Realm != "dev" {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if !strings.HasPrefix(kidOf(t, tok), "acme.dev.") {
		t.Fatalf("kid %q does not name the realm", kidOf(t, tok))
	}
	// The same claims with another tenant's name, under acme's signature:
	// the signature no longer matches.
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"neo_tenant":"acme"`, `"neo_tenant":"globex"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if _, err := a.keys.verify(strings.Join(parts, "."), c.Now()); !errors.Is(err, errSignature) {
		t.Fatalf("forged tenant: %v, want a bad signature", err)
	}
	// A token signed with acme's key naming globex in its claims: refused,
	// whatever the key id says.
	cl := claimsFor(a, "acme", "dev")
	cl.Tenant, cl.Audience = "globex", audience("globex", "dev")
	k, _ := a.keys.signer(realmKey("acme", "dev"))
	payload, _ = json.Marshal(cl)
	jws, _ := k.signer.Sign(payload)
	mixed, _ := jws.CompactSerialize()
	if _, err := a.keys.verify(mixed, c.Now()); !errors.Is(err, errClaims) {
		t.Fatalf("claims of another realm under acme's key: %v", err)
	}
	// Expired (beyond the leeway) and not yet valid.
	if _, err := a.keys.verify(tok, c.Now().Add(5*time.Minute+leeway+time.Second)); !errors.Is(err, errExpired) {
		t.Fatalf("expired token: %v", err)
	}
	// Keys differ per realm.
	if kidOf(t, sign(t, a, "acme", "prod")) == kidOf(t, tok) || kidOf(t, sign(t, a, "globex", "dev")) == kidOf(t, tok) {
		t.Fatal("realms share a key")
	}
}

func TestKeyRotationOverlap(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testApp(t, c, newMemKV(0), newMemKV(0), kek(t))
	realm := realmKey("acme", "dev")
	first := sign(t, a, "acme", "dev")
	c.Add(59 * time.Minute)
	late := sign(t, a, "acme", "dev") // signed by the first key, valid 5 more minutes
	if kidOf(t, late) != kidOf(t, first) {
		t.Fatal("rotated before key_rotation")
	}
	c.Add(2 * time.Minute) // past the rotation period
	next := sign(t, a, "acme", "dev")
	if kidOf(t, next) == kidOf(t, first) {
		t.Fatal("no rotation after key_rotation")
	}
	// Old tokens stay valid until they expire; both keys are published.
	if _, err := a.keys.verify(late, c.Now()); err != nil {
		t.Fatalf("token of the previous key during the overlap: %v", err)
	}
	jwks, _ := a.keys.publicKeys(realm)
	var set jose.JSONWebKeySet
	json.Unmarshal(jwks, &set)
	if len(set.Keys) != 2 || len(set.Key(kidOf(t, first))) != 1 || len(set.Key(kidOf(t, next))) != 1 {
		t.Fatalf("jwks during the overlap: %s", jwks)
	}
	// After the next rotation, the first key is gone.
	c.Add(61 * time.Minute)
	sign(t, a, "acme", "dev")
	jwks, _ = a.keys.publicKeys(realm)
	set = jose.JSONWebKeySet{}
	json.Unmarshal(jwks, &set)
	if len(set.Key(kidOf(t, first))) != 0 || len(set.Keys) != 2 {
		t.Fatalf("jwks after the second rotation: %d keys, first still there: %v", len(set.Keys), len(set.Key(kidOf(t, first))) != 0)
	}
	if bytes.Contains(jwks, []byte(`"d"`)) {
		t.Fatal("private key in the jwks")
	}
}

// TestKeysSharedEncrypted: two edges on one store use the same keys; the
// store holds them encrypted; an edge with another key-encryption key cannot
// use them.
func TestKeysSharedEncrypted(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	store := newMemKV(0)
	secret := kek(t)
	edgeA := testApp(t, c, store, newMemKV(0), secret)
	edgeB := testApp(t, c, store, newMemKV(0), secret)
	tok := sign(t, edgeA, "acme", "dev")
	if _, err := edgeB.keys.verify(tok, c.Now()); err != nil {
		t.Fatalf("edge B verifying edge A's token: %v", err)
	}
	if kidOf(t, sign(t, edgeB, "acme", "dev")) != kidOf(t, tok) {
		t.Fatal("edge B made its own key instead of the shared one")
	}
	raw, _, _ := store.Get(context.Background(), realmKey("acme", "dev"))
	if bytes.Contains(raw, []byte("pkcs8")) || bytes.Contains(raw, []byte("acme.dev.")) {
		t.Fatal("the stored key set is not encrypted")
	}
	other := testApp(t, c, store, newMemKV(0), kek(t))
	if _, err := other.keys.verify(tok, c.Now()); err == nil || !strings.Contains(err.Error(), "decrypt") {
		t.Fatalf("edge with another key-encryption key: %v", err)
	}
}

func TestRefreshRotationReuse(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testApp(t, c, newMemKV(0), newMemKV(0), kek(t))
	ok := func(*session) error { return nil }
	_, rt1, err := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, rt2, err := a.sessions.refresh(rt1, 0, ok)
	if err != nil || rt2 == "" || rt2 == rt1 {
		t.Fatalf("first refresh: %q %v", rt2, err)
	}
	_, rt3, err := a.sessions.refresh(rt2, 0, ok)
	if err != nil {
		t.Fatal(err)
	}
	// rt1 comes back: the chain is revoked, rt3 included.
	if _, _, err := a.sessions.refresh(rt1, 0, ok); !errors.Is(err, errReuse) {
		t.Fatalf("reused token: %v", err)
	}
	if _, _, err := a.sessions.refresh(rt3, 0, ok); !errors.Is(err, errRevoked) {
		t.Fatalf("newest token after reuse: %v", err)
	}

	// With a grace: the token just replaced gets an access token (no new
	// refresh token) within the grace, and revokes the chain after it.
	_, r1, _ := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Hour)
	_, r2, _ := a.sessions.refresh(r1, 10*time.Second, ok)
	c.Add(5 * time.Second)
	if s, next, err := a.sessions.refresh(r1, 10*time.Second, ok); err != nil || next != "" || s.Subject != "alice" {
		t.Fatalf("parallel renewal within the grace: %q %v", next, err)
	}
	c.Add(10 * time.Second)
	if _, _, err := a.sessions.refresh(r1, 10*time.Second, ok); !errors.Is(err, errReuse) {
		t.Fatalf("reuse after the grace: %v", err)
	}
	if _, _, err := a.sessions.refresh(r2, 10*time.Second, ok); !errors.Is(err, errRevoked) {
		t.Fatalf("chain after reuse: %v", err)
	}

	// Expiry, and a check that refuses (user removed): the session ends.
	_, e1, _ := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Minute)
	if _, _, err := a.sessions.refresh(e1, 0, func(*session) error { return errors.New("user removed") }); err == nil {
		t.Fatal("refused session renewed")
	}
	if _, _, err := a.sessions.refresh(e1, 0, ok); !errors.Is(err, errRevoked) {
		t.Fatalf("after a refused renewal: %v", err)
	}
	_, e2, _ := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Minute)
	c.Add(2 * time.Minute)
	if _, _, err := a.sessions.refresh(e2, 0, ok); !errors.Is(err, errNoSession) {
		t.Fatalf("expired session: %v", err)
	}
	// A forged or mangled token of a live session neither renews nor
	// revokes it (the session id is not a secret: it is in access tokens).
	_, live, _ := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Hour)
	id, _, _ := a.sessions.parseRefresh(live)
	for _, bad := range []string{"", "x", "a.b", strings.Repeat("a", 22) + ".1." + strings.Repeat("b", 43), id + ".1.AAAA", id + ".2." + live[len(live)-43:], id + ".01." + live[len(live)-43:]} {
		if _, _, err := a.sessions.refresh(bad, 0, ok); !errors.Is(err, errNoSession) {
			t.Fatalf("refresh(%q): %v", bad, err)
		}
	}
	if _, _, err := a.sessions.refresh(live, 0, ok); err != nil {
		t.Fatalf("the live session after forged tokens: %v", err)
	}
}

func TestCheckPassword(t *testing.T) {
	c := &clock{t: time.Now()}
	a := testApp(t, c, newMemKV(0), newMemKV(0), kek(t))
	bh, _ := bcrypt.GenerateFromPassword([]byte("right-password"), 4)
	salt := []byte("0123456789abcdef")
	ah := "$argon2id$v=19$m=65536,t=1,p=2$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte("right-password"), salt, 1, 65536, 2, 32))
	for _, tc := range []struct {
		name string
		u    *neo.UserConfig
		pw   string
		ok   bool
	}{
		{"bcrypt", &neo.UserConfig{PasswordHash: string(bh)}, "right-password", true},
		{"bcrypt wrong", &neo.UserConfig{PasswordHash: string(bh)}, "wrong", false},
		{"argon2id", &neo.UserConfig{PasswordHash: ah}, "right-password", true},
		{"argon2id wrong", &neo.UserConfig{PasswordHash: ah}, "wrong", false},
		{"argon2id hostile cost", &neo.UserConfig{PasswordHash: strings.Replace(ah, "m=65536", "m=99999999", 1)}, "right-password", false},
		{"config plain text", &neo.UserConfig{Password: "right-password"}, "right-password", true},
		{"config plain text wrong", &neo.UserConfig{Password: "right-password"}, "right-passwore", false},
		{"disabled", &neo.UserConfig{PasswordHash: string(bh), Disabled: true}, "right-password", false},
		{"unknown user", nil, "right-password", false},
	} {
		if err := a.checkPassword(tc.u, tc.pw); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestSafeReturn(t *testing.T) {
	for in, want := range map[string]string{
		"/ledger/x?y=1#z":       "/ledger/x?y=1#z",
		"":                      "/",
		"https://evil.example/": "/",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"\\\\evil.example":      "/",
		"https:/evil.example":   "/",
		"javascript:alert(1)":   "/",
		"/a\r\nLocation: x":     "/",
		"/identity/login":       "/",
		"ledger":                "/",
	} {
		if got := safeReturn(in); got != want {
			t.Errorf("safeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/ledger/", "//x", "/\\x", "https://x", "/%2F%2Fx", "/a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeReturn(s)
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("safeReturn(%q) = %q leaves the host", s, got)
		}
		// What a browser does with it: resolved against the host, it stays there.
		base, _ := url.Parse("https://acme-dev.apps.example/")
		if r := base.ResolveReference(u); r.Host != base.Host {
			t.Fatalf("safeReturn(%q) = %q resolves to %s", s, got, r)
		}
	})
}

// FuzzVerify: untrusted tokens never panic and never verify.
func FuzzVerify(f *testing.F) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testApp(f, c, newMemKV(0), newMemKV(0), kek(f))
	good := sign(f, a, "acme", "dev")
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIiwia2lkIjoiYWNtZS5kZXYueCJ9.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		v, err := a.keys.verify(tok, c.Now())
		if err == nil && tok != good {
			// Only a token the realm's key signed verifies: one differing
			// from good only in ways JOSE tolerates must carry its claims.
			if v.claims.Tenant != "acme" || v.claims.Subject != "alice" {
				t.Fatalf("%q verified as %+v", tok, v.claims)
			}
		}
	})
}

// FuzzTakeCookies: the identity cookies never stay in the Cookie header
// an upstream receives, whatever the header looks like.
func FuzzTakeCookies(f *testing.F) {
	f.Add("a=1; __Host-neo_at=x; b=2")
	f.Add("__Host-neo_rt=y")
	f.Add(";;=; __Host-neo_csrf")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", h)
		withVars(r)
		takeCookies(r)
		for _, c := range r.Cookies() {
			if strings.HasPrefix(c.Name, "__Host-neo_") {
				t.Fatalf("cookie %q left in %q", c.Name, r.Header.Get("Cookie"))
			}
		}
	})
}

func TestTakeCookies(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	withVars(r)
	r.Header.Add("Cookie", "app=1; __Host-neo_at=AT; __Host-neo_rt=RT")
	r.Header.Add("Cookie", "__Host-neo_csrf=C")
	ck := takeCookies(r)
	if ck.access != "AT" || ck.refresh != "RT" || ck.csrf != "C" {
		t.Fatalf("cookies %+v", ck)
	}
	if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != "app=1" {
		t.Fatalf("Cookie header left: %q", got)
	}
	if requestCookies(r) != ck {
		t.Fatal("the taken cookies are not kept for neo_identity")
	}
}

// withVars gives a request Caddy's variable table, as the server does.
func withVars(r *http.Request) {
	*r = *r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
}

// FuzzRefreshToken: untrusted refresh tokens never panic, never renew a
// session and never revoke it, except the session's current token itself.
func FuzzRefreshToken(f *testing.F) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testApp(f, c, newMemKV(0), newMemKV(0), kek(f))
	_, rt, err := a.sessions.create(&session{Tenant: "acme", Realm: "dev", Subject: "alice"}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	id, _, _ := a.sessions.parseRefresh(rt)
	f.Add(id + ".1." + strings.Repeat("A", 43))
	f.Add(id + ".2." + rt[len(rt)-43:])
	f.Add(id + ".")
	f.Add("." + rt)
	f.Add(strings.ToUpper(rt))
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == rt {
			return
		}
		if _, next, err := a.sessions.refresh(tok, time.Minute, func(*session) error { return nil }); err == nil {
			t.Fatalf("refresh(%q) renewed (next %q)", tok, next)
		}
		if s, err := a.sessions.get(id); err != nil || s.Revoked != "" {
			t.Fatalf("refresh(%q) revoked the session: %v", tok, err)
		}
	})
}

// TestValidateFailsClosed: no key-encryption key with a shared store, an
// empty placeholder, or a short key: the config is refused, naming the field.
func TestValidateFailsClosed(t *testing.T) {
	base := func() *App {
		return &App{Algorithm: "ES256", AccessTokenLifetime: caddy.Duration(5 * time.Minute),
			SessionLifetime: caddy.Duration(time.Hour), KeyRotation: caddy.Duration(time.Hour)}
	}
	for name, tc := range map[string]struct {
		a    func() *App
		want string
	}{
		"store without key": {func() *App {
			a := base()
			a.Store = &StoreConfig{Replicas: 1, KeysBucket: "k", SessionsBucket: "s"}
			return a
		}, "key_encryption_key: required"},
		"empty placeholder":       {func() *App { a := base(); a.KeyEncryptionKey = "{env.NEO_IDENTITY_KEK}"; return a }, "key_encryption_key: {env.NEO_IDENTITY_KEK} is empty"},
		"short key":               {func() *App { a := base(); a.KeyEncryptionKey, a.kek = "short", "short"; return a }, "key_encryption_key: want at least 32"},
		"bad algorithm":           {func() *App { a := base(); a.Algorithm = "HS256"; return a }, "algorithm"},
		"token lifetime too long": {func() *App { a := base(); a.AccessTokenLifetime = caddy.Duration(2 * time.Hour); return a }, "access_token_lifetime"},
	} {
		if err := tc.a().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	a := base()
	a.KeyEncryptionKey = "{env.X}"
	a.kek = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	if err := a.Validate(); err != nil {
		t.Fatalf("a good key: %v", err)
	}
}
