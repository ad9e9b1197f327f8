package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// session is one sign-in: an SSO session of a realm (every app of a stage
// shares it) and its chain of refresh tokens. A refresh token is
// "<session id>.<generation>.<MAC>", the MAC keyed by the identity
// service's secret (derived from the key-encryption key), so only the
// service can make one and any edge can check one; the session stores only
// its current generation.
type session struct {
	Tenant   string   `json:"tenant"`
	Realm    string   `json:"realm"`
	Subject  string   `json:"sub"`
	Name     string   `json:"name,omitempty"`
	Email    string   `json:"email,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	Provider string   `json:"provider,omitempty"` // "" for a built-in user
	// UserFP fingerprints a built-in user's password hash: a password
	// change ends the user's sessions.
	UserFP string `json:"user_fp,omitempty"`
	// Gen is the generation of the current refresh token.
	Gen       uint64    `json:"gen"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Revoked   string    `json:"revoked,omitempty"` // why: "reuse", "signed out", ...
}

type sessions struct {
	store   kv
	timeout time.Duration
	now     func() time.Time
	macKey  []byte
	// prevMAC is the refresh-token key of the previous key-encryption key:
	// its tokens are still accepted (a renewal replaces them).
	prevMAC []byte
}

func (ss *sessions) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ss.timeout)
}

func sessionKey(id string) string { return "s." + id }

// token returns the refresh token of a session's generation.
func (ss *sessions) token(id string, gen uint64) string {
	return tokenMAC(ss.macKey, id, gen)
}

func tokenMAC(key []byte, id string, gen uint64) string {
	g := strconv.FormatUint(gen, 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("neo refresh token\x00" + id + "\x00" + g))
	return id + "." + g + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// create stores a new session and returns its id and first refresh token.
func (ss *sessions) create(s *session, lifetime time.Duration) (id, refresh string, err error) {
	id = randomID(16)
	now := ss.now().UTC()
	s.Gen, s.Created, s.Expires = 1, now, now.Add(lifetime)
	data, err := json.Marshal(s)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	if _, err := ss.store.Create(ctx, sessionKey(id), data); err != nil {
		return "", "", err
	}
	return id, ss.token(id, 1), nil
}

var (
	errNoSession = errors.New("no such session or expired")
	errRevoked   = errors.New("session revoked")
	// errReuse: a refresh token that was already used came back; the
	// whole chain is revoked.
	errReuse = errors.New("refresh token reused: session revoked")
)

// parseRefresh splits a refresh token; ok only for a well-formed token
// whose MAC is the service's (a forged or mangled token is rejected without
// touching its session).
func (ss *sessions) parseRefresh(tok string) (id string, gen uint64, ok bool) {
	if len(tok) > 128 {
		return "", 0, false
	}
	id, rest, ok1 := strings.Cut(tok, ".")
	g, _, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(id) != 22 {
		return "", 0, false
	}
	gen, err := strconv.ParseUint(g, 10, 64)
	if err != nil || gen == 0 || strconv.FormatUint(gen, 10) != g {
		return "", 0, false
	}
	if !hmac.Equal([]byte(ss.token(id, gen)), []byte(tok)) &&
		(ss.prevMAC == nil || !hmac.Equal([]byte(tokenMAC(ss.prevMAC, id, gen)), []byte(tok))) {
		return "", 0, false
	}
	return id, gen, true
}

// refresh rotates a refresh token: it returns the session and the next
// refresh token. An earlier generation of the chain revokes the chain,
// except the one just replaced within grace (parallel requests of one
// browser racing to renew): that one gets the session and no new token.
// check may refuse the session (user removed, disabled, password changed).
func (ss *sessions) refresh(tok string, grace time.Duration, check func(*session) error) (*session, string, error) {
	id, gen, ok := ss.parseRefresh(tok)
	if !ok {
		return nil, "", errNoSession
	}
	for attempt := 0; attempt < 4; attempt++ {
		ctx, cancel := ss.ctx()
		data, rev, err := ss.store.Get(ctx, sessionKey(id))
		cancel()
		if errors.Is(err, errNoKey) {
			return nil, "", errNoSession
		}
		if err != nil {
			return nil, "", err
		}
		s := new(session)
		if err := json.Unmarshal(data, s); err != nil {
			return nil, "", fmt.Errorf("session %s: %w", id, err)
		}
		now := ss.now()
		if s.Revoked != "" {
			return s, "", errRevoked
		}
		if now.After(s.Expires) {
			return s, "", errNoSession
		}
		switch {
		case gen == s.Gen:
			if err := check(s); err != nil {
				mRenewals.WithLabelValues("refused").Inc()
				if rerr := ss.revoke(id, err.Error()); rerr != nil {
					return s, "", fmt.Errorf("%w; revoking the session: %v", err, rerr)
				}
				return s, "", err
			}
			s.Gen++
			s.RotatedAt = now.UTC()
			data, _ := json.Marshal(s)
			ctx, cancel := ss.ctx()
			_, err := ss.store.Update(ctx, sessionKey(id), data, rev)
			cancel()
			if errors.Is(err, errRevision) {
				continue // a parallel renewal won: read again
			}
			if err != nil {
				return nil, "", err
			}
			mRenewals.WithLabelValues("ok").Inc()
			return s, ss.token(id, s.Gen), nil
		case gen+1 == s.Gen && grace > 0 && now.Sub(s.RotatedAt) < grace:
			if err := check(s); err != nil {
				return s, "", err
			}
			mRenewals.WithLabelValues("grace").Inc()
			return s, "", nil
		case gen < s.Gen:
			mRenewals.WithLabelValues("reuse").Inc()
			if rerr := ss.revoke(id, "reuse"); rerr != nil {
				return s, "", fmt.Errorf("%w; revoking the session: %v", errReuse, rerr)
			}
			return s, "", errReuse
		default: // a generation not issued yet: cannot be ours
			return nil, "", errNoSession
		}
	}
	return nil, "", errors.New("session: too many concurrent renewals")
}

// revoke ends a session for good (sign-out, reuse). Idempotent.
func (ss *sessions) revoke(id, why string) error {
	for attempt := 0; attempt < 8; attempt++ {
		ctx, cancel := ss.ctx()
		data, rev, err := ss.store.Get(ctx, sessionKey(id))
		cancel()
		if errors.Is(err, errNoKey) {
			return nil
		}
		if err != nil {
			return err
		}
		s := new(session)
		if err := json.Unmarshal(data, s); err != nil || s.Revoked != "" {
			return err
		}
		s.Revoked = why
		data, _ = json.Marshal(s)
		ctx, cancel = ss.ctx()
		_, err = ss.store.Update(ctx, sessionKey(id), data, rev)
		cancel()
		if errors.Is(err, errRevision) {
			continue
		}
		return err
	}
	return errors.New("session: too many concurrent changes")
}

// get returns a session (revoked or not).
func (ss *sessions) get(id string) (*session, error) {
	ctx, cancel := ss.ctx()
	defer cancel()
	data, _, err := ss.store.Get(ctx, sessionKey(id))
	if err != nil {
		if errors.Is(err, errNoKey) {
			return nil, errNoSession
		}
		return nil, err
	}
	s := new(session)
	return s, json.Unmarshal(data, s)
}
