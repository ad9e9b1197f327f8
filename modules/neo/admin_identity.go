package neo

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BcryptCost is the cost of the password hashes the admin API makes.
const BcryptCost = 11

// HashPassword returns the bcrypt hash the admin API stores for a password.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return string(h), nil
}

// HashClientSecret returns the stored form of a client secret.
func HashClientSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// prepareIdentity readies a tenant written through the admin API: secrets
// the caller left out are kept from the current version, plain-text
// passwords are replaced by their hashes.
func prepareIdentity(tc, prev *TenantConfig) error {
	if tc == nil || tc.Identity == nil {
		return nil
	}
	if prev != nil {
		tc.Identity.KeepSecrets(prev.Identity)
	}
	return tc.Identity.HashPasswords(HashPassword)
}

// ClientView is an API client as the admin API shows it: never its secret
// (only ClientCreated, once, holds it).
type ClientView struct {
	ClientID string    `json:"client_id"`
	Name     string    `json:"name,omitempty"`
	Realm    string    `json:"realm"`
	Roles    []string  `json:"roles,omitempty"`
	Created  time.Time `json:"created,omitzero"`
}

// ClientCreated is the answer to a client's creation: the only time the
// secret is shown.
type ClientCreated struct {
	ClientView
	ClientSecret string `json:"client_secret"`
}

func clientView(id string, c *ClientConfig) ClientView {
	r := c.Realm
	if r == "" {
		r = RealmPlatform
	}
	return ClientView{ClientID: id, Name: c.Name, Realm: r, Roles: c.Roles, Created: c.Created}
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// handleIdentityAdmin serves /neo/tenants/{t}/identity[/...] on tc, a copy
// of the tenant's configuration. It returns the status, the JSON answer of
// a GET or a creation, whether tc was changed (and must be written), or an
// error.
//
//	GET|PUT|DELETE identity                                IdentityConfig
//	GET|PUT|DELETE identity/platform                       RealmConfig
//	GET|PUT|DELETE identity/stages/{s}                     RealmConfig
//	GET|PUT|DELETE identity/{platform|stages/{s}}/users/{u}      UserConfig
//	GET|PUT|DELETE identity/{platform|stages/{s}}/providers/{p}  ProviderConfig
//	GET            identity/clients                        [ClientView]
//	POST           identity/clients                        {name, realm, roles} -> 201 ClientCreated
//	GET|DELETE     identity/clients/{id}                   ClientView
func (a *App) handleIdentityAdmin(method, tenant string, sub []string, body []byte, tc *TenantConfig) (status int, v any, changed bool, err error) {
	notFound := func(what string) (int, any, bool, error) {
		return http.StatusNotFound, nil, false, fmt.Errorf("%s of tenant %q: %w", what, tenant, ErrNotFound)
	}
	badMethod := func() (int, any, bool, error) {
		return http.StatusMethodNotAllowed, nil, false, errors.New("method not allowed")
	}
	ic := tc.Identity
	if len(sub) == 0 {
		switch method {
		case http.MethodGet:
			if ic == nil {
				return http.StatusOK, &IdentityConfig{}, false, nil
			}
			return http.StatusOK, ic.Redacted(), false, nil
		case http.MethodDelete:
			if ic == nil {
				return notFound("identity")
			}
			tc.Identity = nil
			return http.StatusOK, nil, true, nil
		case http.MethodPut:
			n := new(IdentityConfig)
			if err := strictDecode(body, n); err != nil {
				return http.StatusBadRequest, nil, false, err
			}
			status := http.StatusOK
			if ic == nil {
				status = http.StatusCreated
			}
			n.KeepSecrets(ic)
			if err := n.HashPasswords(HashPassword); err != nil {
				return http.StatusBadRequest, nil, false, err
			}
			tc.Identity = n
			return status, nil, true, nil
		}
		return badMethod()
	}
	if ic == nil {
		ic = &IdentityConfig{}
		tc.Identity = ic
	}
	if sub[0] == "clients" {
		return a.handleClientsAdmin(method, tenant, sub[1:], body, ic)
	}
	// The realm: identity/platform[/...] or identity/stages/{s}[/...].
	var realmName string
	var rest []string
	switch {
	case sub[0] == RealmPlatform:
		realmName, rest = RealmPlatform, sub[1:]
	case sub[0] == "stages" && len(sub) >= 2:
		realmName, rest = sub[1], sub[2:]
		if _, ok := a.g.stages.index[realmName]; !ok {
			return http.StatusNotFound, nil, false, fmt.Errorf("stage %q: %w", realmName, ErrNotFound)
		}
	default:
		return http.StatusNotFound, nil, false, fmt.Errorf("no such resource: identity/%s", strings.Join(sub, "/"))
	}
	rc := ic.Realm(realmName)
	setRealm := func(r *RealmConfig) {
		if realmName == RealmPlatform {
			ic.Platform = r
			return
		}
		if ic.Stages == nil {
			ic.Stages = map[string]*RealmConfig{}
		}
		if r == nil {
			delete(ic.Stages, realmName)
		} else {
			ic.Stages[realmName] = r
		}
	}
	what := "identity realm " + realmName
	if len(rest) == 0 {
		switch method {
		case http.MethodGet:
			if rc == nil {
				return notFound(what)
			}
			return http.StatusOK, (&IdentityConfig{Platform: rc}).Redacted().Platform, false, nil
		case http.MethodDelete:
			if rc == nil {
				return notFound(what)
			}
			setRealm(nil)
			return http.StatusOK, nil, true, nil
		case http.MethodPut:
			n := new(RealmConfig)
			if err := strictDecode(body, n); err != nil {
				return http.StatusBadRequest, nil, false, err
			}
			tmp := &IdentityConfig{Platform: n}
			tmp.KeepSecrets(&IdentityConfig{Platform: rc})
			if err := tmp.HashPasswords(HashPassword); err != nil {
				return http.StatusBadRequest, nil, false, err
			}
			status := http.StatusOK
			if rc == nil {
				status = http.StatusCreated
			}
			setRealm(n)
			return status, nil, true, nil
		}
		return badMethod()
	}
	if len(rest) != 2 || (rest[0] != "users" && rest[0] != "providers") {
		return http.StatusNotFound, nil, false, fmt.Errorf("no such resource: identity/%s", strings.Join(sub, "/"))
	}
	item := rest[1]
	if rc == nil {
		if method != http.MethodPut {
			return notFound(what)
		}
		rc = &RealmConfig{}
		setRealm(rc)
	}
	if rest[0] == "users" {
		cur, ok := rc.Users[item]
		switch method {
		case http.MethodGet:
			if !ok {
				return notFound("user " + item + " of " + what)
			}
			c := *cur
			c.PasswordHash, c.Password = "", ""
			return http.StatusOK, &c, false, nil
		case http.MethodDelete:
			if !ok {
				return notFound("user " + item + " of " + what)
			}
			delete(rc.Users, item)
			return http.StatusOK, nil, true, nil
		case http.MethodPut:
			u := new(UserConfig)
			if err := strictDecode(body, u); err != nil {
				return http.StatusBadRequest, nil, false, err
			}
			if ok && u.Password == "" && u.PasswordHash == "" {
				u.PasswordHash = cur.PasswordHash
			}
			if u.Password != "" {
				if len(u.Password) < 8 || len(u.Password) > 72 {
					return http.StatusBadRequest, nil, false, fmt.Errorf("password: want 8 to 72 bytes")
				}
				h, err := HashPassword(u.Password)
				if err != nil {
					return http.StatusBadRequest, nil, false, err
				}
				u.PasswordHash, u.Password = h, ""
			}
			if rc.Users == nil {
				rc.Users = map[string]*UserConfig{}
			}
			rc.Users[item] = u
			if ok {
				return http.StatusOK, nil, true, nil
			}
			return http.StatusCreated, nil, true, nil
		}
		return badMethod()
	}
	cur, ok := rc.Providers[item]
	switch method {
	case http.MethodGet:
		if !ok {
			return notFound("provider " + item + " of " + what)
		}
		return http.StatusOK, cur, false, nil
	case http.MethodDelete:
		if !ok {
			return notFound("provider " + item + " of " + what)
		}
		delete(rc.Providers, item)
		return http.StatusOK, nil, true, nil
	case http.MethodPut:
		p := new(ProviderConfig)
		if err := strictDecode(body, p); err != nil {
			return http.StatusBadRequest, nil, false, err
		}
		if rc.Providers == nil {
			rc.Providers = map[string]*ProviderConfig{}
		}
		rc.Providers[item] = p
		if ok {
			return http.StatusOK, nil, true, nil
		}
		return http.StatusCreated, nil, true, nil
	}
	return badMethod()
}

func (a *App) handleClientsAdmin(method, tenant string, sub []string, body []byte, ic *IdentityConfig) (int, any, bool, error) {
	if len(sub) == 0 {
		switch method {
		case http.MethodGet:
			list := make([]ClientView, 0, len(ic.Clients))
			for id, c := range ic.Clients {
				list = append(list, clientView(id, c))
			}
			sort.Slice(list, func(i, j int) bool { return list[i].ClientID < list[j].ClientID })
			return http.StatusOK, list, false, nil
		case http.MethodPut: // POST: create, with a new id and secret
			var req struct {
				Name  string   `json:"name,omitempty"`
				Realm string   `json:"realm,omitempty"`
				Roles []string `json:"roles,omitempty"`
			}
			if len(body) > 0 {
				if err := strictDecode(body, &req); err != nil {
					return http.StatusBadRequest, nil, false, err
				}
			}
			id := "neo_" + randomToken(18)
			secret := randomToken(32)
			c := &ClientConfig{Name: req.Name, Realm: req.Realm, Roles: req.Roles, SecretHash: HashClientSecret(secret),
				Created: time.Now().UTC().Truncate(time.Second)}
			if ic.Clients == nil {
				ic.Clients = map[string]*ClientConfig{}
			}
			ic.Clients[id] = c
			return http.StatusCreated, &ClientCreated{ClientView: clientView(id, c), ClientSecret: secret}, true, nil
		}
		return http.StatusMethodNotAllowed, nil, false, errors.New("method not allowed")
	}
	if len(sub) != 1 {
		return http.StatusNotFound, nil, false, fmt.Errorf("no such resource: identity/clients/%s", strings.Join(sub, "/"))
	}
	c, ok := ic.Clients[sub[0]]
	if !ok {
		return http.StatusNotFound, nil, false, fmt.Errorf("client %q of tenant %q: %w", sub[0], tenant, ErrNotFound)
	}
	switch method {
	case http.MethodGet:
		return http.StatusOK, clientView(sub[0], c), false, nil
	case http.MethodDelete:
		delete(ic.Clients, sub[0])
		return http.StatusOK, nil, true, nil
	}
	return http.StatusMethodNotAllowed, nil, false, errors.New("method not allowed (a client's secret cannot be changed: create a new client and delete this one)")
}
