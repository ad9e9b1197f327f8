package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Claims are the claims of an access token.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ID        string `json:"jti"`
	// Tenant and Realm bind the token: it opens only that tenant's realm
	// ("platform" or a stage).
	Tenant string `json:"neo_tenant"`
	Realm  string `json:"neo_realm"`
	// Session is the sign-in session (absent for client credentials).
	Session  string   `json:"sid,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Name     string   `json:"name,omitempty"`
	Email    string   `json:"email,omitempty"`
	Roles    []string `json:"roles,omitempty"`
}

// audience is the aud of a realm's tokens.
func audience(tenant, realm string) string { return "neo:" + tenant + "/" + realm }

// sign issues a token signed with the realm's current key.
func (kr *keyring) sign(c *Claims) (string, error) {
	k, err := kr.signer(realmKey(c.Tenant, c.Realm))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

var (
	errMalformed = errors.New("malformed token")
	errSignature = errors.New("bad signature")
	errExpired   = errors.New("expired token")
	errClaims    = errors.New("claims do not match the signing realm")
)

// verified is a token that passed verification.
type verified struct {
	claims Claims
	// header values for the upstream, shared read-only.
	user, roles, realm []string
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// verify checks a token's signature with the key its kid names, and its
// times. It does not compare the token's realm with the request's.
func (kr *keyring) verify(tok string, now time.Time) (*verified, error) {
	if len(tok) > maxToken {
		return nil, errMalformed
	}
	h, _, ok := strings.Cut(tok, ".")
	if !ok || strings.Count(tok, ".") != 2 {
		return nil, errMalformed
	}
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, errMalformed
	}
	var hdr jwtHeader
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, errMalformed
	}
	tenant, realm, ok := splitKid(hdr.Kid)
	if !ok {
		return nil, errMalformed
	}
	k, err := kr.verifier(realmKey(tenant, realm), hdr.Kid)
	if err != nil {
		if errors.Is(err, errUnknownKey) {
			return nil, errSignature
		}
		return nil, err
	}
	if hdr.Alg != string(k.alg) {
		return nil, errSignature
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{k.alg})
	if err != nil {
		return nil, errMalformed
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return nil, errSignature
	}
	v := new(verified)
	if err := json.Unmarshal(payload, &v.claims); err != nil {
		return nil, errMalformed
	}
	c := &v.claims
	if c.Tenant != tenant || c.Realm != realm || c.Audience != audience(tenant, realm) {
		return nil, errClaims
	}
	if err := checkTimes(c, now); err != nil {
		return nil, err
	}
	v.user = []string{c.Subject}
	v.roles = []string{strings.Join(c.Roles, " ")}
	v.realm = []string{c.Realm}
	return v, nil
}

// leeway tolerates clocks of edges that differ a little.
const leeway = 30 * time.Second

func checkTimes(c *Claims, now time.Time) error {
	t := now.Unix()
	if t > c.Expiry+int64(leeway/time.Second) || t+int64(leeway/time.Second) < c.NotBefore {
		return errExpired
	}
	return nil
}

// maxToken bounds the tokens read (a request header is at most 64 KiB at the edge).
const maxToken = 8192

// tokenCache remembers verified tokens, so a token is verified once, not on
// every request: a lookup is a hash of the token and a map read, without
// allocation. Bounded: a full shard is emptied.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards   = 32
	cacheShardMax = 1024
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*verified
}

func newTokenCache() *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*verified)
	}
	return c
}

func (c *tokenCache) shard(tok string) *cacheShard {
	return &c.shards[maphash.String(c.seed, tok)%cacheShards]
}

func (c *tokenCache) get(tok string) *verified {
	s := c.shard(tok)
	s.mu.RLock()
	v := s.m[tok]
	s.mu.RUnlock()
	return v
}

// reset forgets every verified token.
func (c *tokenCache) reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (c *tokenCache) put(tok string, v *verified) {
	s := c.shard(tok)
	s.mu.Lock()
	if len(s.m) >= cacheShardMax {
		clear(s.m)
	}
	s.m[strings.Clone(tok)] = v
	s.mu.Unlock()
}
