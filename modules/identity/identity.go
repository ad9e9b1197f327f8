// Package identity is caddy-neo's identity service: per-tenant, per-stage
// sign-in and tokens at the edge.
//
//   - neo_identity (app, identity.App): per-realm signing keys (ES256 or
//     EdDSA) that rotate with overlap, sessions with rotating refresh
//     tokens, state shared across edges through JetStream KV.
//   - neo_signin (handler, Portal): the /identity/ endpoints on every tenant
//     host: the sign-in page (built-in users, external OpenID Connect
//     providers with authorization code + PKCE), sign-out, the token
//     endpoint (client credentials, refresh tokens), the public keys and
//     OIDC discovery.
//   - neo_identity (handler, Guard): in front of private apps and Platform
//     APIs, lets through only requests with a valid access token of the
//     route's tenant and realm (a stage, or the Platform); renews a
//     browser's expired access token from its session; sends a browser
//     without a session to the sign-in page.
//
// A realm is one tenant's stage (its end users) or its Platform (its
// organization's members). Every realm has its own users, providers, keys
// and sessions: a token of acme's dev stage is refused (403) on acme's prod
// stage and on every other tenant.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(Guard{})
}

// Guard is the neo_identity handler: it runs after neo_route and lets a
// request through only with a valid access token bound to the route's
// tenant and realm (its stage, or the Platform for platform services).
//
// The token comes from the `Authorization: Bearer` header (an API client)
// or the session cookie the sign-in set (a browser); never from the query
// string. An API client with no, an expired or a forged token gets 401; a
// valid token of another tenant or realm gets 403. A browser whose access
// token expired is renewed from its session's refresh token (rotated); a
// browser without a session is redirected (302) to the sign-in page of the
// host, which brings it back to the URL it asked for.
//
// The upstream receives `Neo-User` (the subject), `Neo-User-Roles` (space
// separated), `Neo-Realm`, and the access token as `Authorization: Bearer`
// for apps that verify it themselves (the keys are at
// /identity/.well-known/jwks.json). Placeholders: {neo.user},
// {neo.user.roles}.
type Guard struct {
	// Roles, when set, admits only tokens holding at least one of them.
	// Default: any user of the realm.
	Roles []string `json:"roles,omitempty"`
	// NoRedirect answers 401 to browsers too, instead of sending them to
	// the sign-in page. Default: false.
	NoRedirect bool `json:"no_redirect,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_identity", New: func() caddy.Module { return new(Guard) }}
}

// Provision finds the neo_identity app.
func (g *Guard) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	a, err := ctx.App("neo_identity")
	if err != nil {
		return fmt.Errorf("neo_identity needs the neo_identity app (global option neo_identity): %w", err)
	}
	g.app = a.(*App)
	return nil
}

// Validate checks the roles.
func (g *Guard) Validate() error {
	for i, r := range g.Roles {
		if !neo.ValidRole(r) {
			return fmt.Errorf("roles[%d]: %q is not a valid role", i, r)
		}
	}
	return nil
}

var (
	errNotBound  = errors.New("the token is not for this tenant and realm")
	errNoRole    = errors.New("the token holds none of the required roles")
	errNoToken   = errors.New("no valid access token")
	errNoRoute   = errors.New("no resolved tenant")
	errStateDown = errors.New("identity state unavailable")
)

// ServeHTTP checks the request's token.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	route, ok := neo.RouteFromRequest(r)
	if !ok || route.Tenant == "" {
		g.refuse(r, "", "", "no resolved tenant", "")
		mRefused.WithLabelValues("403").Inc()
		return caddyhttp.Error(http.StatusForbidden, errNoRoute)
	}
	realm := route.Stage
	if route.Service != "" {
		realm = neo.RealmPlatform
	}
	ck := requestCookies(r)
	tok, api := bearer(r)
	if !api {
		tok = ck.access
	}
	a := g.app
	if tok != "" {
		v, err := a.validate(tok)
		switch {
		case err == nil:
			return g.admit(w, r, next, route.Tenant, realm, v, tok, api)
		case errors.Is(err, errUnavailable):
			g.refuse(r, route.Tenant, realm, "identity state unavailable: "+err.Error(), "")
			mRefused.WithLabelValues("503").Inc()
			return caddyhttp.Error(http.StatusServiceUnavailable, errStateDown)
		}
		if api {
			mRefused.WithLabelValues("401").Inc()
			g.refuse(r, route.Tenant, realm, "bad token: "+err.Error(), "")
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			return caddyhttp.Error(http.StatusUnauthorized, errNoToken)
		}
	}
	if api || r.Header.Get("Authorization") != "" {
		g.refuse(r, route.Tenant, realm, "no bearer token", "")
		mRefused.WithLabelValues("401").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer`)
		return caddyhttp.Error(http.StatusUnauthorized, errNoToken)
	}
	// A browser: renew from the session, if it has one for this realm.
	if ck.refresh != "" {
		v, at, err := a.renewFromCookie(w, r, ck.refresh, route.Tenant, realm)
		if err == nil {
			return g.admit(w, r, next, route.Tenant, realm, v, at, false)
		}
		if errors.Is(err, errUnavailable) {
			g.refuse(r, route.Tenant, realm, "identity state unavailable: "+err.Error(), "")
			mRefused.WithLabelValues("503").Inc()
			return caddyhttp.Error(http.StatusServiceUnavailable, errStateDown)
		}
		g.refuse(r, route.Tenant, realm, "session not renewed: "+err.Error(), "")
		clearSessionCookies(w)
	}
	if g.NoRedirect || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		mRefused.WithLabelValues("401").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer`)
		return caddyhttp.Error(http.StatusUnauthorized, errNoToken)
	}
	mRefused.WithLabelValues("302").Inc()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, loginPath+"?return="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
	return nil
}

// admit checks the token's binding and roles and passes the request on.
func (g *Guard) admit(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, tenant, realm string, v *verified, tok string, api bool) error {
	c := &v.claims
	if c.Tenant != tenant || c.Realm != realm {
		g.refuse(r, tenant, realm, "token of tenant "+c.Tenant+" realm "+c.Realm, c.Subject)
		mRefused.WithLabelValues("403").Inc()
		return caddyhttp.Error(http.StatusForbidden, errNotBound)
	}
	if len(g.Roles) > 0 && !slices.ContainsFunc(c.Roles, func(x string) bool { return slices.Contains(g.Roles, x) }) {
		g.refuse(r, tenant, realm, "no required role", c.Subject)
		mRefused.WithLabelValues("403").Inc()
		return caddyhttp.Error(http.StatusForbidden, errNoRole)
	}
	h := r.Header
	h["Neo-User"] = v.user
	h["Neo-User-Roles"] = v.roles
	h["Neo-Realm"] = v.realm
	if !api {
		h.Set("Authorization", "Bearer "+tok)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("neo.user", c.Subject)
		repl.Set("neo.user.roles", v.roles[0])
	}
	return next.ServeHTTP(w, r)
}

func (g *Guard) refuse(r *http.Request, tenant, realm, reason, user string) {
	if ce := g.logger.Check(zapcore.InfoLevel, "identity refused"); ce != nil {
		ce.Write(zap.String("tenant", tenant), zap.String("realm", realm), zap.String("user", user),
			zap.String("reason", reason), zap.String("method", r.Method), zap.String("uri", r.URL.RequestURI()))
	}
}

// bearer returns the token of an `Authorization: Bearer` header; api is
// true when the request has an Authorization header of that scheme.
func bearer(r *http.Request) (tok string, api bool) {
	h := r.Header["Authorization"]
	if len(h) != 1 {
		return "", len(h) > 1
	}
	v := h[0]
	if len(v) < 6 || !strings.EqualFold(v[:6], "bearer") {
		return "", false
	}
	return strings.TrimSpace(v[6:]), true
}

// validate returns a verified token, from the cache or verified now.
func (a *App) validate(tok string) (*verified, error) {
	now := a.now()
	if v := a.cache.get(tok); v != nil {
		if err := checkTimes(&v.claims, now); err != nil {
			return nil, err
		}
		return v, nil
	}
	v, err := a.keys.verify(tok, now)
	if err != nil {
		return nil, err
	}
	a.cache.put(tok, v)
	return v, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
