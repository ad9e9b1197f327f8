package identity

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// issuerFor is the issuer of the tokens signed for requests to host: the
// identity endpoints of that host, as the client addresses it.
func issuerFor(r *http.Request) string { return "https://" + r.Host + "/identity" }

// accessToken signs an access token for a session.
func (a *App) accessToken(r *http.Request, s *session, sid string) (string, *verified, error) {
	now := a.now()
	c := &Claims{
		Issuer: issuerFor(r), Subject: s.Subject, Audience: audience(s.Tenant, s.Realm),
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(time.Duration(a.AccessTokenLifetime)).Unix(),
		ID: randomID(12), Tenant: s.Tenant, Realm: s.Realm, Session: sid,
		Name: s.Name, Email: s.Email, Roles: s.Roles,
	}
	tok, err := a.keys.sign(c)
	if err != nil {
		return "", nil, err
	}
	v := &verified{claims: *c, user: []string{c.Subject}, roles: []string{joinRoles(c.Roles)}, realm: []string{c.Realm}}
	a.cache.put(tok, v)
	return tok, v, nil
}

func joinRoles(roles []string) string {
	out := ""
	for i, r := range roles {
		if i > 0 {
			out += " "
		}
		out += r
	}
	return out
}

// startSession creates a session for a signed-in user and sets its cookies.
func (a *App) startSession(w http.ResponseWriter, r *http.Request, s *session) error {
	sid, refresh, err := a.sessions.create(s, time.Duration(a.SessionLifetime))
	if err != nil {
		return err
	}
	at, _, err := a.accessToken(r, s, sid)
	if err != nil {
		return err
	}
	a.setSessionCookies(w, at, refresh, s)
	return nil
}

var errWrongRealm = errors.New("the session belongs to another realm")

// renewFromCookie renews a browser's access token from its refresh cookie
// (rotating it, with the reuse grace for parallel requests) and sets the
// new cookies.
func (a *App) renewFromCookie(w http.ResponseWriter, r *http.Request, refresh, tenant, realm string) (*verified, string, error) {
	s, next, err := a.renew(refresh, tenant, realm, time.Duration(a.RefreshReuseGrace))
	if err != nil {
		return nil, "", err
	}
	id, _, _ := a.sessions.parseRefresh(refresh)
	at, v, err := a.accessToken(r, s, id)
	if err != nil {
		return nil, "", err
	}
	a.setSessionCookies(w, at, next, s)
	return v, at, nil
}

// renew rotates a refresh token of the given realm.
func (a *App) renew(refresh, tenant, realm string, grace time.Duration) (*session, string, error) {
	if id, _, ok := a.sessions.parseRefresh(refresh); ok {
		// A session of another realm is refused without touching it: its
		// token was not used here, so it is no reuse.
		s, err := a.sessions.get(id)
		if err != nil {
			return nil, "", err
		}
		if s.Tenant != tenant || s.Realm != realm {
			return nil, "", errWrongRealm
		}
	}
	return a.sessions.refresh(refresh, grace, a.stillValid)
}

// stillValid refuses to renew a session whose user or provider is gone, or
// whose user was disabled or changed password, and refreshes the user's
// name, email and roles from the tenant's current configuration.
func (a *App) stillValid(s *session) error {
	snap, ok := registry()
	if !ok {
		return errors.New("no tenant registry")
	}
	t, ok := snap.Tenant(s.Tenant)
	if !ok {
		return errors.New("tenant removed")
	}
	rc := t.Config.Identity.Realm(s.Realm)
	if rc == nil {
		return errors.New("realm has no identity configuration")
	}
	if s.Provider != "" {
		if rc.Providers[s.Provider] == nil {
			return errors.New("provider removed")
		}
		return nil
	}
	u := rc.Users[s.Subject]
	switch {
	case u == nil:
		return errors.New("user removed")
	case u.Disabled:
		return errors.New("user disabled")
	case userFP(u) != s.UserFP:
		return errors.New("password changed")
	}
	s.Name, s.Email, s.Roles = displayName(s.Subject, u), u.Email, slices.Clone(u.Roles)
	return nil
}

func displayName(name string, u *neo.UserConfig) string {
	if u.Name != "" {
		return u.Name
	}
	return name
}
