package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(Portal{})
}

// The identity endpoints, on every tenant host.
const (
	identityPrefix = "/identity/"
	loginPath      = "/identity/login"
	logoutPath     = "/identity/logout"
	tokenPath      = "/identity/token"
	callbackPath   = "/identity/callback"
	oidcPrefix     = "/identity/oidc/"
	jwksPath       = "/identity/.well-known/jwks.json"
	discoveryPath  = "/identity/.well-known/openid-configuration"
)

// Portal is the neo_signin handler. Put it before neo_route on every tenant
// host: it answers /identity/... itself (for the host's tenant and realm:
// its stage, or its Platform) and passes every other request on, after
// taking the identity cookies out of its Cookie header (no upstream ever
// sees them; neo_identity reads them).
//
//	GET  /identity/login?return=<path>     the sign-in page: the tenant's name,
//	                                       its built-in users' form, a button per provider
//	POST /identity/login                   user name + password -> session, 303 to return
//	GET  /identity/oidc/<provider>         to the external provider (code + PKCE)
//	GET  /identity/callback                back from it -> session, 303 to return
//	GET|POST /identity/logout              sign-out (POST ends the session)
//	POST /identity/token                   grant_type=client_credentials | refresh_token
//	GET  /identity/.well-known/jwks.json   the realm's public keys
//	GET  /identity/.well-known/openid-configuration
//
// A host of no tenant gets 404. No answer tells whether a user name exists
// (one message, one password hash comparison either way). The return URL
// must be a path on the same host (no scheme, no host, no `//`).
type Portal struct {
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Portal) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_signin", New: func() caddy.Module { return new(Portal) }}
}

// Provision finds the neo_identity app.
func (p *Portal) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	a, err := ctx.App("neo_identity")
	if err != nil {
		return fmt.Errorf("neo_signin needs the neo_identity app (global option neo_identity): %w", err)
	}
	p.app = a.(*App)
	return nil
}

var errNotFound = errors.New("not found")

// ServeHTTP answers the identity endpoints and passes the rest on.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ck := takeCookies(r)
	path := r.URL.Path
	if !strings.HasPrefix(path, identityPrefix) && path != "/identity" {
		return next.ServeHTTP(w, r)
	}
	snap, ok := registry()
	if !ok {
		return caddyhttp.Error(http.StatusNotFound, errNotFound)
	}
	hr, ok := snap.RealmForHost(r.Host)
	if !ok {
		return caddyhttp.Error(http.StatusNotFound, errNotFound)
	}
	rq := &portalRequest{p: p, a: p.app, w: w, r: r, ck: ck, tenant: hr.Tenant, realm: hr.Realm(), host: hr}
	rq.rc = hr.Tenant.Config.Identity.Realm(rq.realm)
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case path == loginPath:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return rq.loginPage(http.StatusOK, "")
		case http.MethodPost:
			return rq.login()
		}
	case path == logoutPath:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return rq.logoutPage()
		case http.MethodPost:
			return rq.logout()
		}
	case path == tokenPath:
		if r.Method == http.MethodPost {
			return rq.token()
		}
	case path == jwksPath:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return rq.jwks()
		}
	case path == discoveryPath:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return rq.discovery()
		}
	case strings.HasPrefix(path, oidcPrefix):
		if r.Method == http.MethodGet {
			return rq.oidcStart(strings.TrimPrefix(path, oidcPrefix))
		}
	case path == callbackPath:
		if r.Method == http.MethodGet {
			return rq.oidcCallback()
		}
	default:
		return caddyhttp.Error(http.StatusNotFound, errNotFound)
	}
	w.Header().Set("Allow", "GET, POST")
	return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("method not allowed"))
}

// portalRequest is one request to the identity endpoints.
type portalRequest struct {
	p      *Portal
	a      *App
	w      http.ResponseWriter
	r      *http.Request
	ck     *reqCookies
	tenant *neo.Tenant
	realm  string
	rc     *neo.RealmConfig // nil: nobody can sign in here
	host   neo.HostRealm
}

func (rq *portalRequest) log(msg, reason string, fields ...zap.Field) {
	rq.p.logger.Info(msg, append([]zap.Field{zap.String("tenant", rq.tenant.Name), zap.String("realm", rq.realm),
		zap.String("reason", reason), zap.String("remote", rq.r.RemoteAddr)}, fields...)...)
}

// safeReturn returns s if it is a path on this host, else "/".
func safeReturn(s string) string {
	if s == "" || len(s) > 2048 || s[0] != '/' || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	if strings.HasPrefix(u.Path, identityPrefix) {
		return "/" // never back into the sign-in endpoints
	}
	return s
}

// csrfToken returns the form token for the nonce in the CSRF cookie,
// setting a new cookie when there is none.
func (rq *portalRequest) csrfToken() string {
	nonce := rq.ck.csrf
	if len(nonce) != 22 {
		nonce = randomID(16)
		rq.ck.csrf = nonce
		setCookie(rq.w, cookieCSRF, nonce, 2*time.Hour, http.SameSiteStrictMode)
	}
	return rq.a.mac("csrf", rq.r.Host, nonce)
}

func (rq *portalRequest) csrfOK() bool {
	if len(rq.ck.csrf) != 22 {
		return false
	}
	got := []byte(rq.r.PostFormValue("csrf"))
	if hmac.Equal([]byte(rq.a.mac("csrf", rq.r.Host, rq.ck.csrf)), got) {
		return true
	}
	return rq.a.prevMAC != nil && hmac.Equal([]byte(macWith(rq.a.prevMAC, "csrf", rq.r.Host, rq.ck.csrf)), got)
}

// mac authenticates parts with the identity service's cookie key.
func (a *App) mac(parts ...string) string { return macWith(a.macKey, parts...) }

func macWith(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

type providerLink struct{ Label, URL string }

type loginData struct {
	Tenant, Realm, Host, Return, CSRF, Error string
	Users                                    bool
	Providers                                []providerLink
}

func (rq *portalRequest) realmLabel() string {
	if rq.realm == neo.RealmPlatform {
		return "Platform"
	}
	return rq.realm
}

func (rq *portalRequest) loginPage(status int, msg string) error {
	ret := safeReturn(rq.r.FormValue("return"))
	d := loginData{Tenant: rq.tenant.Name, Realm: rq.realmLabel(), Host: rq.r.Host, Return: ret, CSRF: rq.csrfToken(), Error: msg}
	if rq.rc != nil {
		d.Users = len(rq.rc.Users) > 0
		names := make([]string, 0, len(rq.rc.Providers))
		for n := range rq.rc.Providers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			label := rq.rc.Providers[n].Label
			if label == "" {
				label = "Sign in with " + n
			}
			d.Providers = append(d.Providers, providerLink{Label: label, URL: oidcPrefix + n + "?return=" + url.QueryEscape(ret)})
		}
	}
	return rq.html(status, loginTemplate, d)
}

func (rq *portalRequest) html(status int, t *template.Template, d any) error {
	h := rq.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	rq.w.WriteHeader(status)
	if rq.r.Method == http.MethodHead {
		return nil
	}
	return t.Execute(rq.w, d)
}

// maxForm bounds the identity endpoints' form bodies.
const maxForm = 16 << 10

func (rq *portalRequest) parseForm() error {
	rq.r.Body = http.MaxBytesReader(rq.w, rq.r.Body, maxForm)
	if err := rq.r.ParseForm(); err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	return nil
}

func (rq *portalRequest) login() error {
	if err := rq.parseForm(); err != nil {
		return err
	}
	if !rq.csrfOK() {
		rq.log("sign-in refused", "missing or wrong form token")
		return rq.loginPage(http.StatusForbidden, "Your sign-in form expired. Please try again.")
	}
	name := strings.ToLower(strings.TrimSpace(rq.r.PostFormValue("username")))
	password := rq.r.PostFormValue("password")
	var u *neo.UserConfig
	if rq.rc != nil && neo.ValidUserName(name) {
		u = rq.rc.Users[name]
	}
	if err := rq.a.checkPassword(u, password); err != nil {
		rq.log("sign-in refused", "wrong user name or password", zap.String("user", name))
		mSignIns.WithLabelValues("password", "refused").Inc()
		return rq.loginPage(http.StatusUnauthorized, "Wrong user name or password.")
	}
	s := &session{Tenant: rq.tenant.Name, Realm: rq.realm, Subject: name, Name: displayName(name, u),
		Email: u.Email, Roles: u.Roles, UserFP: userFP(u)}
	if err := rq.a.startSession(rq.w, rq.r, s); err != nil {
		return rq.stateError(err)
	}
	rq.log("signed in", "password", zap.String("user", name))
	mSignIns.WithLabelValues("password", "ok").Inc()
	http.Redirect(rq.w, rq.r, safeReturn(rq.r.PostFormValue("return")), http.StatusSeeOther)
	return nil
}

func (rq *portalRequest) stateError(err error) error {
	rq.p.logger.Error("identity state", zap.String("tenant", rq.tenant.Name), zap.String("realm", rq.realm), zap.Error(err))
	return caddyhttp.Error(http.StatusServiceUnavailable, errStateDown)
}

func (rq *portalRequest) logoutPage() error {
	return rq.html(http.StatusOK, logoutTemplate, loginData{Tenant: rq.tenant.Name, Realm: rq.realmLabel(), CSRF: rq.csrfToken()})
}

func (rq *portalRequest) logout() error {
	if err := rq.parseForm(); err != nil {
		return err
	}
	if !rq.csrfOK() {
		return rq.logoutPage()
	}
	if id, _, ok := rq.a.sessions.parseRefresh(rq.ck.refresh); ok {
		if s, err := rq.a.sessions.get(id); err == nil && s.Tenant == rq.tenant.Name && s.Realm == rq.realm {
			if err := rq.a.sessions.revoke(id, "signed out"); err != nil {
				return rq.stateError(err)
			}
			rq.log("signed out", "", zap.String("user", s.Subject))
		}
	}
	clearSessionCookies(rq.w)
	return rq.html(http.StatusOK, signedOutTemplate, loginData{Tenant: rq.tenant.Name, Realm: rq.realmLabel()})
}

// tokenError answers an OAuth 2 error.
func (rq *portalRequest) tokenError(status int, code, reason string) error {
	rq.log("token refused", reason, zap.String("error", code))
	mTokens.WithLabelValues(grantLabel(rq.r.PostFormValue("grant_type")), "refused").Inc()
	if status == http.StatusUnauthorized {
		rq.w.Header().Set("WWW-Authenticate", `Basic realm="identity"`)
	}
	return rq.json(status, map[string]string{"error": code})
}

func (rq *portalRequest) json(status int, v any) error {
	rq.w.Header().Set("Content-Type", "application/json")
	rq.w.WriteHeader(status)
	return json.NewEncoder(rq.w).Encode(v)
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// token is the token endpoint (RFC 6749): client credentials and refresh tokens.
func (rq *portalRequest) token() error {
	if err := rq.parseForm(); err != nil {
		return err
	}
	switch rq.r.PostFormValue("grant_type") {
	case "client_credentials":
		return rq.clientCredentials()
	case "refresh_token":
		return rq.refreshGrant()
	}
	return rq.tokenError(http.StatusBadRequest, "unsupported_grant_type", "unsupported grant type")
}

func (rq *portalRequest) clientCredentials() error {
	id, secret, basic := rq.r.BasicAuth()
	if basic {
		// RFC 6749 2.3.1: form-encoded in the Basic header.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = rq.r.PostFormValue("client_id"), rq.r.PostFormValue("client_secret")
	}
	var c *neo.ClientConfig
	if ic := rq.tenant.Config.Identity; ic != nil && neo.ValidClientID(id) {
		c = ic.Clients[id]
	}
	got := neo.HashClientSecret(secret) // computed either way: no timing difference
	if c == nil || subtle.ConstantTimeCompare([]byte(got), []byte(c.SecretHash)) != 1 {
		return rq.tokenError(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
	}
	realm := c.Realm
	if realm == "" {
		realm = neo.RealmPlatform
	}
	if realm != rq.realm {
		return rq.tokenError(http.StatusBadRequest, "invalid_grant", "client of realm "+realm)
	}
	now := rq.a.now()
	claims := &Claims{
		Issuer: issuerFor(rq.r), Subject: "client:" + id, Audience: audience(rq.tenant.Name, realm),
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(time.Duration(rq.a.AccessTokenLifetime)).Unix(),
		ID: randomID(12), Tenant: rq.tenant.Name, Realm: realm, ClientID: id, Name: c.Name, Roles: c.Roles,
	}
	tok, err := rq.a.keys.sign(claims)
	if err != nil {
		return rq.stateError(err)
	}
	rq.log("token issued", "client_credentials", zap.String("client_id", id))
	mTokens.WithLabelValues("client_credentials", "ok").Inc()
	return rq.json(http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(time.Duration(rq.a.AccessTokenLifetime) / time.Second)})
}

// refreshGrant renews with a refresh token from the form (no reuse at all)
// or from the session cookie (the browser's; reuse grace for its parallel
// requests, and the rotated token goes back in the cookie).
func (rq *portalRequest) refreshGrant() error {
	rt := rq.r.PostFormValue("refresh_token")
	fromCookie := rt == ""
	grace := time.Duration(0)
	if fromCookie {
		rt, grace = rq.ck.refresh, time.Duration(rq.a.RefreshReuseGrace)
	}
	s, next, err := rq.a.renew(rt, rq.tenant.Name, rq.realm, grace)
	if err != nil {
		if errors.Is(err, errUnavailable) {
			return rq.stateError(err)
		}
		if fromCookie {
			clearSessionCookies(rq.w)
		}
		return rq.tokenError(http.StatusBadRequest, "invalid_grant", err.Error())
	}
	id, _, _ := rq.a.sessions.parseRefresh(rt)
	at, _, err := rq.a.accessToken(rq.r, s, id)
	if err != nil {
		return rq.stateError(err)
	}
	mTokens.WithLabelValues("refresh_token", "ok").Inc()
	resp := tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(time.Duration(rq.a.AccessTokenLifetime) / time.Second)}
	if fromCookie {
		rq.a.setSessionCookies(rq.w, at, next, s)
	} else {
		resp.RefreshToken = next
	}
	return rq.json(http.StatusOK, resp)
}

func (rq *portalRequest) jwks() error {
	data, err := rq.a.keys.publicKeys(realmKey(rq.tenant.Name, rq.realm))
	if err != nil {
		return rq.stateError(err)
	}
	h := rq.w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	// Shorter than the overlap of a rotation: clients see a new key before
	// the previous one stops verifying.
	h.Set("Cache-Control", "public, max-age=60")
	_, err = rq.w.Write(data)
	return err
}

func (rq *portalRequest) discovery() error {
	iss := issuerFor(rq.r)
	rq.w.Header().Set("Cache-Control", "public, max-age=300")
	return rq.json(http.StatusOK, map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              iss + "/.well-known/jwks.json",
		"token_endpoint":                        iss + "/token",
		"end_session_endpoint":                  iss + "/logout",
		"grant_types_supported":                 []string{"client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"response_types_supported":              []string{},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{rq.a.Algorithm},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "neo_tenant", "neo_realm", "sid", "client_id", "name", "email", "roles"},
		"neo_tenant":                            rq.tenant.Name,
		"neo_realm":                             rq.realm,
	})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Portal)(nil)
	_ caddyhttp.MiddlewareHandler = (*Portal)(nil)
)

func grantLabel(g string) string {
	switch g {
	case "client_credentials", "refresh_token":
		return g
	}
	return "other"
}
