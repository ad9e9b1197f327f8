package identity

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// A realm key names one tenant's realm: "<tenant>.<realm>", where realm is
// "platform" or a stage. Tenants and stages are DNS labels, so the dot
// separates them unambiguously. Key ids are "<realm key>.<random>", so a
// token's kid names the realm whose keys verify it.
func realmKey(tenant, realm string) string { return tenant + "." + realm }

// splitKid returns the tenant and realm a key id names.
func splitKid(kid string) (tenant, realm string, ok bool) {
	t, rest, ok1 := strings.Cut(kid, ".")
	r, id, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || t == "" || r == "" || id == "" || len(kid) > 160 {
		return "", "", false
	}
	return t, r, true
}

// sealer encrypts signing keys for the shared store (AES-256-GCM with a key
// derived from the key-encryption key; the realm key is the associated
// data, so a sealed key set cannot be moved to another realm).
type sealer struct{ aead cipher.AEAD }

func newSealer(kek []byte) (*sealer, error) {
	return newSealerInfo(kek, "caddy-neo identity signing keys v1")
}

func newSealerInfo(secret []byte, info string) (*sealer, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, info, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: g}, nil
}

func (s *sealer) seal(ad string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(ad))
}

func (s *sealer) open(ad string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
}

// storedKey is a signing key as stored (sealed) in the keys bucket.
type storedKey struct {
	Kid     string    `json:"kid"`
	Alg     string    `json:"alg"`
	PKCS8   []byte    `json:"pkcs8"`
	Created time.Time `json:"created"`
	// Retired is when the key stopped signing (a newer key took over); it
	// verifies until Retired + the access-token lifetime.
	Retired time.Time `json:"retired,omitzero"`
}

type storedSet struct {
	Keys []storedKey `json:"keys"`
}

// signingKey is a usable key.
type signingKey struct {
	kid     string
	alg     jose.SignatureAlgorithm
	priv    crypto.Signer
	pub     crypto.PublicKey
	created time.Time
	retired time.Time
	signer  jose.Signer
}

// keySet is one realm's keys, newest first; immutable once published.
type keySet struct {
	keys   []*signingKey
	byKid  map[string]*signingKey
	rev    uint64
	loaded time.Time
	jwks   []byte // the public keys as a JWK set
}

func (ks *keySet) current() *signingKey {
	if ks == nil || len(ks.keys) == 0 || !ks.keys[0].retired.IsZero() {
		return nil
	}
	return ks.keys[0]
}

// keyring holds the realms' key sets: a cache in front of the keys bucket,
// kept current by the bucket's watch (keys another edge rotated).
type keyring struct {
	store    kv
	seal     *sealer
	alg      jose.SignatureAlgorithm
	rotation time.Duration
	overlap  time.Duration // how long a retired key still verifies
	now      func() time.Time
	timeout  time.Duration

	sets sync.Map // realm key -> *keySet
	mu   sync.Mutex
	// misses limits store reads for unknown key ids: realm key -> time of last reload.
	misses sync.Map
	loads  atomic.Uint64
}

func (kr *keyring) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), kr.timeout)
}

func generate(alg jose.SignatureAlgorithm, realm string, now time.Time) (storedKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return storedKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return storedKey{}, err
	}
	return storedKey{Kid: realm + "." + randomID(9), Alg: string(alg), PKCS8: der, Created: now.UTC()}, nil
}

func (kr *keyring) decode(realm string, data []byte, rev uint64) (*keySet, error) {
	plain, err := kr.seal.open(realm, data)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: cannot decrypt (wrong key_encryption_key?): %w", realm, err)
	}
	var ss storedSet
	if err := json.Unmarshal(plain, &ss); err != nil {
		return nil, fmt.Errorf("keys of %s: %w", realm, err)
	}
	return kr.build(ss, rev)
}

func (kr *keyring) build(ss storedSet, rev uint64) (*keySet, error) {
	ks := &keySet{byKid: map[string]*signingKey{}, rev: rev, loaded: kr.now()}
	var pub jose.JSONWebKeySet
	for _, sk := range ss.Keys {
		k, err := x509.ParsePKCS8PrivateKey(sk.PKCS8)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", sk.Kid, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key %s: not a signing key", sk.Kid)
		}
		alg := jose.SignatureAlgorithm(sk.Alg)
		js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: signer, KeyID: sk.Kid, Algorithm: sk.Alg}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", sk.Kid, err)
		}
		key := &signingKey{kid: sk.Kid, alg: alg, priv: signer, pub: signer.Public(), created: sk.Created, retired: sk.Retired, signer: js}
		ks.keys = append(ks.keys, key)
		ks.byKid[sk.Kid] = key
		pub.Keys = append(pub.Keys, jose.JSONWebKey{Key: key.pub, KeyID: sk.Kid, Algorithm: sk.Alg, Use: "sig"})
	}
	var err error
	ks.jwks, err = json.Marshal(pub)
	return ks, err
}

// load reads a realm's key set from the store (nil when it has none) and caches it.
func (kr *keyring) load(realm string) (*keySet, error) {
	ctx, cancel := kr.ctx()
	defer cancel()
	kr.loads.Add(1)
	data, rev, err := kr.store.Get(ctx, realm)
	if errors.Is(err, errNoKey) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ks, err := kr.decode(realm, data, rev)
	if err != nil {
		return nil, err
	}
	kr.publish(realm, ks)
	return ks, nil
}

// publish caches ks unless a newer revision is cached.
func (kr *keyring) publish(realm string, ks *keySet) {
	for {
		old, ok := kr.sets.Load(realm)
		if ok && old.(*keySet).rev >= ks.rev {
			return
		}
		if !ok {
			if _, loaded := kr.sets.LoadOrStore(realm, ks); !loaded {
				return
			}
			continue
		}
		if kr.sets.CompareAndSwap(realm, old, ks) {
			return
		}
	}
}

// applyWatched applies a change of the keys bucket another edge made (or
// this one): only realms this edge uses are cached.
func (kr *keyring) applyWatched(realm string, val []byte, rev uint64) {
	if _, used := kr.sets.Load(realm); !used {
		return
	}
	if val == nil {
		kr.sets.Delete(realm)
		return
	}
	if ks, err := kr.decode(realm, val, rev); err == nil {
		kr.publish(realm, ks)
	}
}

// cached returns the realm's keys, loading them from the store once.
func (kr *keyring) cached(realm string) (*keySet, error) {
	if v, ok := kr.sets.Load(realm); ok {
		return v.(*keySet), nil
	}
	return kr.load(realm)
}

// verifier returns the key with id kid of the realm. An unknown kid reloads
// the realm from the store at most once a second (another edge may just
// have rotated), so tokens with made-up key ids cannot flood the store.
func (kr *keyring) verifier(realm, kid string) (*signingKey, error) {
	ks, err := kr.cached(realm)
	if err != nil {
		return nil, err
	}
	if ks != nil {
		if k, ok := ks.byKid[kid]; ok && kr.verifies(k) {
			return k, nil
		}
	}
	now := kr.now()
	if last, ok := kr.misses.Load(realm); ok && now.Sub(last.(time.Time)) < time.Second {
		return nil, errUnknownKey
	}
	kr.misses.Store(realm, now)
	if ks, err = kr.load(realm); err != nil {
		return nil, err
	}
	if ks != nil {
		if k, ok := ks.byKid[kid]; ok && kr.verifies(k) {
			return k, nil
		}
	}
	return nil, errUnknownKey
}

var errUnknownKey = errors.New("unknown key id")

func (kr *keyring) verifies(k *signingKey) bool {
	return k.retired.IsZero() || kr.now().Before(k.retired.Add(kr.overlap))
}

// signer returns the realm's current signing key, creating the realm's
// first key or rotating when the current one is older than the rotation
// period. Edges race through compare-and-swap: one wins, the others adopt
// its keys.
func (kr *keyring) signer(realm string) (*signingKey, error) {
	ks, err := kr.cached(realm)
	if err != nil {
		return nil, err
	}
	now := kr.now()
	if k := ks.current(); k != nil && now.Sub(k.created) < kr.rotation {
		return k, nil
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	for attempt := 0; attempt < 5; attempt++ {
		ks, err = kr.load(realm)
		if err != nil {
			return nil, err
		}
		if k := ks.current(); k != nil && now.Sub(k.created) < kr.rotation {
			return k, nil
		}
		var ss storedSet
		fresh, err := generate(kr.alg, realm, now)
		if err != nil {
			return nil, err
		}
		ss.Keys = append(ss.Keys, fresh)
		if ks != nil {
			for _, k := range ks.keys {
				sk := storedKey{Kid: k.kid, Alg: string(k.alg), Created: k.created, Retired: k.retired}
				if sk.Retired.IsZero() {
					sk.Retired = now.UTC()
				}
				if now.Sub(sk.Retired) >= kr.overlap {
					continue // its tokens have all expired
				}
				if sk.PKCS8, err = x509.MarshalPKCS8PrivateKey(k.priv); err != nil {
					return nil, err
				}
				ss.Keys = append(ss.Keys, sk)
			}
		}
		plain, err := json.Marshal(ss)
		if err != nil {
			return nil, err
		}
		sealed := kr.seal.seal(realm, plain)
		ctx, cancel := kr.ctx()
		var rev uint64
		if ks == nil {
			rev, err = kr.store.Create(ctx, realm, sealed)
		} else {
			rev, err = kr.store.Update(ctx, realm, sealed, ks.rev)
		}
		cancel()
		if errors.Is(err, errExists) || errors.Is(err, errRevision) {
			continue // another edge created or rotated: take its keys
		}
		if err != nil {
			return nil, err
		}
		nks, err := kr.build(ss, rev)
		if err != nil {
			return nil, err
		}
		kr.publish(realm, nks)
		return nks.keys[0], nil
	}
	return nil, errors.New("signing keys: too many concurrent rotations")
}

// publicKeys returns the realm's JWK set, creating its first key if needed
// (so apps can fetch the keys before the first sign-in).
func (kr *keyring) publicKeys(realm string) ([]byte, error) {
	if _, err := kr.signer(realm); err != nil {
		return nil, err
	}
	ks, err := kr.cached(realm)
	if err != nil || ks == nil {
		return nil, err
	}
	return ks.jwks, nil
}
