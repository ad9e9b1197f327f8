package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// session is one sign-in: an SSO session of a realm (every app of a stage
// shares it) and its chain of refresh tokens. Only the hashes of the
// current and the previous refresh token are stored.
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
	UserFP    string    `json:"user_fp,omitempty"`
	Current   string    `json:"current"`
	Previous  string    `json:"previous,omitempty"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Revoked   string    `json:"revoked,omitempty"` // why: "reuse", "signed out", ...
	Rotations int       `json:"rotations"`
}

type sessions struct {
	store   kv
	timeout time.Duration
	now     func() time.Time
}

func (ss *sessions) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ss.timeout)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func sessionKey(id string) string { return "s." + id }

// create stores a new session and returns its first refresh token
// "<session id>.<secret>".
func (ss *sessions) create(s *session, lifetime time.Duration) (id, refresh string, err error) {
	id, secret := randomID(16), randomID(32)
	now := ss.now().UTC()
	s.Current, s.Created, s.Expires = hashSecret(secret), now, now.Add(lifetime)
	data, err := json.Marshal(s)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	if _, err := ss.store.Create(ctx, sessionKey(id), data); err != nil {
		return "", "", err
	}
	return id, id + "." + secret, nil
}

var (
	errNoSession = errors.New("no such session or expired")
	errRevoked   = errors.New("session revoked")
	// errReuse: a refresh token that was already used came back; the
	// whole chain is revoked.
	errReuse = errors.New("refresh token reused: session revoked")
)

func parseRefresh(tok string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(tok, ".")
	if !ok || len(id) != 22 || len(secret) != 43 || len(tok) > 128 {
		return "", "", false
	}
	return id, secret, true
}

// refresh rotates a refresh token: it returns the session and the next
// refresh token. A token that is not the chain's current one revokes the
// chain, except the one just replaced within grace (parallel requests of
// one browser racing to renew): that one gets the session and no new token.
// check may refuse the session (user removed, disabled, password changed).
func (ss *sessions) refresh(tok string, grace time.Duration, check func(*session) error) (*session, string, error) {
	id, secret, ok := parseRefresh(tok)
	if !ok {
		return nil, "", errNoSession
	}
	h := hashSecret(secret)
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
		case subtle.ConstantTimeCompare([]byte(h), []byte(s.Current)) == 1:
			if err := check(s); err != nil {
				ss.revoke(id, err.Error())
				mRenewals.WithLabelValues("refused").Inc()
				return s, "", err
			}
			next := randomID(32)
			s.Previous, s.Current, s.RotatedAt = s.Current, hashSecret(next), now.UTC()
			s.Rotations++
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
			return s, id + "." + next, nil
		case s.Previous != "" && subtle.ConstantTimeCompare([]byte(h), []byte(s.Previous)) == 1 && grace > 0 && now.Sub(s.RotatedAt) < grace:
			if err := check(s); err != nil {
				return s, "", err
			}
			mRenewals.WithLabelValues("grace").Inc()
			return s, "", nil
		default:
			ss.revoke(id, "reuse")
			mRenewals.WithLabelValues("reuse").Inc()
			return s, "", errReuse
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
