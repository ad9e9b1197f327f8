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
// data, so a sealed key set cannot be moved to another realm). prev, when
// set, is the previous key-encryption key's: it only decrypts.
type sealer struct{ aead, prev cipher.AEAD }

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

// withPrevious returns a sealer that also opens what prev sealed (nil prev: s).
func (s *sealer) withPrevious(prev *sealer) *sealer {
	if prev == nil {
		return s
	}
	return &sealer{aead: s.aead, prev: prev.aead}
}

func (s *sealer) seal(ad string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(ad))
}

func (s *sealer) open(ad string, sealed []byte) ([]byte, error) {
	plain, _, err := s.openAny(ad, sealed)
	return plain, err
}

// openAny opens a value sealed with the current key or, failing that, the
// previous one (previous reports which).
func (s *sealer) openAny(ad string, sealed []byte) (plain []byte, previous bool, err error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, false, errors.New("sealed value too short")
	}
	plain, err = s.aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
	if err != nil && s.prev != nil {
		if p, perr := s.prev.Open(nil, sealed[:n], sealed[n:], []byte(ad)); perr == nil {
			return p, true, nil
		}
	}
	return plain, false, err
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
	misses   sync.Map
	loads    atomic.Uint64
	resealed atomic.Uint64 // key sets re-sealed from the previous key-encryption key
	// dropped is called when a key that still verified was removed
	// (retired at once, here or by another edge).
	dropped func()
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

// errSealedElsewhere: a realm's stored keys open with neither the current
// nor the previous key-encryption key.
var errSealedElsewhere = errors.New("cannot decrypt (wrong key_encryption_key?)")

// decode opens a realm's stored key set; plain is set (to re-seal it) when
// it was sealed with the previous key-encryption key.
func (kr *keyring) decode(realm string, data []byte, rev uint64) (ks *keySet, stale []byte, err error) {
	plain, previous, err := kr.seal.openAny(realm, data)
	if err != nil {
		return nil, nil, fmt.Errorf("keys of %s: %w: %w", realm, errSealedElsewhere, err)
	}
	var ss storedSet
	if err := json.Unmarshal(plain, &ss); err != nil {
		return nil, nil, fmt.Errorf("keys of %s: %w", realm, err)
	}
	ks, err = kr.build(ss, rev)
	if previous {
		stale = plain
	}
	return ks, stale, err
}

// reseal writes a key set that was sealed with the previous key-encryption
// key again with the current one (compare-and-swap: if another edge changed
// it meanwhile, its write stands). It returns the new revision, or 0.
func (kr *keyring) reseal(realm string, plain []byte, rev uint64) uint64 {
	ctx, cancel := kr.ctx()
	defer cancel()
	nrev, err := kr.store.Update(ctx, realm, kr.seal.seal(realm, plain), rev)
	if err != nil {
		return 0
	}
	kr.resealed.Add(1)
	return nrev
}

// sweep re-seals every stored key set still sealed with the previous
// key-encryption key, and checks that every set opens. It reports how many
// sets it re-sealed, and the realms left: those whose sets open with
// neither key, or that changed while being re-sealed.
func (kr *keyring) sweep(ctx context.Context) (resealed int, left []string, err error) {
	var unreadable []string
	lister, ok := kr.store.(keyLister)
	if !ok {
		return 0, nil, nil
	}
	names, err := lister.Keys(ctx)
	if err != nil {
		return 0, nil, err
	}
	for _, realm := range names {
		if ctx.Err() != nil {
			return resealed, unreadable, ctx.Err()
		}
		gctx, cancel := kr.ctx()
		data, rev, err := kr.store.Get(gctx, realm)
		cancel()
		if errors.Is(err, errNoKey) {
			continue
		}
		if err != nil {
			return resealed, unreadable, err
		}
		_, stale, err := kr.decode(realm, data, rev)
		switch {
		case errors.Is(err, errSealedElsewhere):
			unreadable = append(unreadable, realm)
		case err != nil:
			return resealed, unreadable, err
		case stale != nil:
			if kr.reseal(realm, stale, rev) != 0 {
				resealed++
			} else {
				unreadable = append(unreadable, realm)
			}
		}
	}
	return resealed, unreadable, nil
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
	ks, stale, err := kr.decode(realm, data, rev)
	if err != nil {
		return nil, err
	}
	if stale != nil {
		if nrev := kr.reseal(realm, stale, rev); nrev != 0 {
			ks.rev = nrev
		}
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
			if kr.dropped != nil {
				for _, k := range old.(*keySet).keys {
					if _, kept := ks.byKid[k.kid]; !kept && kr.verifies(k) {
						// retired before its overlap ended: forget the
						// tokens it signed that were verified already
						kr.dropped()
						break
					}
				}
			}
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
	if ks, _, err := kr.decode(realm, val, rev); err == nil {
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
	if k := ks.current(); k != nil && kr.now().Sub(k.created) < kr.rotation {
		return k, nil
	}
	return kr.change(realm, rotateIfDue)
}

// keyChange is what change does to a realm's key set.
type keyChange int

const (
	rotateIfDue keyChange = iota // a new key when the current one is older than the rotation period
	rotateNow                    // a new key now; the previous ones keep verifying for the overlap
	retireNow                    // drop every retired key now: tokens they signed are refused
)

// change rotates or retires a realm's keys and returns its current key.
func (kr *keyring) change(realm string, how keyChange) (*signingKey, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	now := kr.now()
	for attempt := 0; attempt < 5; attempt++ {
		ks, err := kr.load(realm)
		if err != nil {
			return nil, err
		}
		cur := ks.current()
		if how == rotateIfDue && cur != nil && now.Sub(cur.created) < kr.rotation {
			return cur, nil
		}
		var ss storedSet
		if how != retireNow || cur == nil {
			fresh, err := generate(kr.alg, realm, now)
			if err != nil {
				return nil, err
			}
			ss.Keys = append(ss.Keys, fresh)
		}
		if ks != nil {
			for _, k := range ks.keys {
				sk := storedKey{Kid: k.kid, Alg: string(k.alg), Created: k.created, Retired: k.retired}
				if how == retireNow && k != cur {
					continue
				}
				if sk.Retired.IsZero() && len(ss.Keys) > 0 {
					sk.Retired = now.UTC()
				}
				if !sk.Retired.IsZero() && now.Sub(sk.Retired) >= kr.overlap {
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
			// another edge created or rotated: take its keys (rotateIfDue),
			// or apply the change to what is there now
			continue
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

// keyInfo describes one of a realm's keys (admin API).
type keyInfo struct {
	Kid     string    `json:"kid"`
	Created time.Time `json:"created"`
	// Retired is when it stopped signing; VerifiesUntil when tokens it
	// signed stop being accepted.
	Retired       time.Time `json:"retired,omitzero"`
	VerifiesUntil time.Time `json:"verifies_until,omitzero"`
	Signing       bool      `json:"signing,omitempty"`
}

// describe lists a realm's keys, newest first (nil: it has none yet).
func (kr *keyring) describe(realm string) ([]keyInfo, error) {
	ks, err := kr.load(realm)
	if err != nil || ks == nil {
		return nil, err
	}
	out := []keyInfo{}
	for _, k := range ks.keys {
		if !kr.verifies(k) {
			continue
		}
		ki := keyInfo{Kid: k.kid, Created: k.created.UTC(), Signing: k == ks.current()}
		if !k.retired.IsZero() {
			ki.Retired = k.retired.UTC()
			ki.VerifiesUntil = k.retired.Add(kr.overlap).UTC()
		}
		out = append(out, ki)
	}
	return out, nil
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
