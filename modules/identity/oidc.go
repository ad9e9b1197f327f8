package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// oidcClients caches the external providers' discovery (per issuer, for
// discoveryTTL), shared by every tenant that uses the same issuer.
type oidcClients struct {
	logger *zap.Logger
	client *http.Client
	mu     sync.Mutex
	byIss  map[string]*oidcEntry
}

type oidcEntry struct {
	p       *oidc.Provider
	fetched time.Time
}

const (
	discoveryTTL = 10 * time.Minute
	oidcTimeout  = 10 * time.Second
	// oidcFlowTTL bounds the time between leaving for the provider and
	// coming back.
	oidcFlowTTL = 10 * time.Minute
)

func newOIDCClients(l *zap.Logger) *oidcClients {
	return &oidcClients{logger: l, client: &http.Client{Timeout: oidcTimeout}, byIss: map[string]*oidcEntry{}}
}

func (oc *oidcClients) provider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	oc.mu.Lock()
	e := oc.byIss[issuer]
	oc.mu.Unlock()
	if e != nil && time.Since(e.fetched) < discoveryTTL {
		return e.p, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, oc.client), oidcTimeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, err
	}
	oc.mu.Lock()
	if len(oc.byIss) > 4096 {
		clear(oc.byIss)
	}
	oc.byIss[issuer] = &oidcEntry{p: p, fetched: time.Now()}
	oc.mu.Unlock()
	return p, nil
}

// oidcFlow is a sign-in in progress at an external provider, kept sealed in
// a host-only cookie of the browser.
type oidcFlow struct {
	Tenant   string    `json:"t"`
	Realm    string    `json:"r"`
	Provider string    `json:"p"`
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Return   string    `json:"ret"`
	Expires  time.Time `json:"exp"`
}

func (a *App) flowSealer() *sealer {
	s, _ := newSealerInfo(a.macKey, "caddy-neo identity oidc flow v1")
	if a.prevMAC != nil {
		p, _ := newSealerInfo(a.prevMAC, "caddy-neo identity oidc flow v1")
		s = s.withPrevious(p)
	}
	return s
}

func (rq *portalRequest) oauthConfig(name string, pc *neo.ProviderConfig, p *oidc.Provider) (*oauth2.Config, error) {
	secret := ""
	if ref, ok := strings.CutPrefix(pc.ClientSecret, "env:"); ok {
		secret = os.Getenv(ref)
		if secret == "" {
			return nil, fmt.Errorf("provider %s: client secret %s is not set on this edge", name, pc.ClientSecret)
		}
	}
	scopes := pc.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	return &oauth2.Config{ClientID: pc.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(),
		RedirectURL: "https://" + rq.r.Host + callbackPath, Scopes: scopes}, nil
}

func (rq *portalRequest) providerConfig(name string) *neo.ProviderConfig {
	if rq.rc == nil {
		return nil
	}
	return rq.rc.Providers[name]
}

// oidcStart sends the browser to the provider: authorization code with
// PKCE (S256), a state and a nonce, all kept in a sealed cookie.
func (rq *portalRequest) oidcStart(name string) error {
	pc := rq.providerConfig(name)
	if pc == nil {
		return caddyhttp.Error(http.StatusNotFound, errNotFound)
	}
	p, err := rq.a.oidc.provider(rq.r.Context(), pc.Issuer)
	if err != nil {
		rq.log("oidc provider unreachable", err.Error(), zap.String("provider", name))
		return caddyhttp.Error(http.StatusBadGateway, errors.New("identity provider unreachable"))
	}
	cfg, err := rq.oauthConfig(name, pc, p)
	if err != nil {
		rq.log("oidc provider misconfigured", err.Error(), zap.String("provider", name))
		return caddyhttp.Error(http.StatusBadGateway, errors.New("identity provider not configured on this edge"))
	}
	f := oidcFlow{Tenant: rq.tenant.Name, Realm: rq.realm, Provider: name, State: randomID(16), Nonce: randomID(16),
		Verifier: oauth2.GenerateVerifier(), Return: safeReturn(rq.r.URL.Query().Get("return")), Expires: rq.a.now().Add(oidcFlowTTL)}
	plain, _ := json.Marshal(f)
	setCookie(rq.w, cookieOIDC, base64.RawURLEncoding.EncodeToString(rq.a.flowSealer().seal(rq.r.Host, plain)), oidcFlowTTL, http.SameSiteLaxMode)
	u := cfg.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	http.Redirect(rq.w, rq.r, u, http.StatusFound)
	return nil
}

// oidcCallback finishes a sign-in at a provider: state, code exchange with
// the PKCE verifier, ID token verification (issuer, audience, expiry,
// nonce), the role mapping, then a session of this realm.
func (rq *portalRequest) oidcCallback() error {
	fail := func(reason string) error {
		rq.log("oidc sign-in refused", reason)
		mSignIns.WithLabelValues("oidc", "refused").Inc()
		setCookie(rq.w, cookieOIDC, "", -1, http.SameSiteLaxMode)
		return rq.loginPage(http.StatusUnauthorized, "Sign-in at the identity provider failed. Please try again.")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(rq.ck.oidc)
	if err != nil || rq.ck.oidc == "" {
		return fail("no sign-in in progress")
	}
	plain, err := rq.a.flowSealer().open(rq.r.Host, sealed)
	if err != nil {
		return fail("sign-in cookie not ours")
	}
	var f oidcFlow
	if json.Unmarshal(plain, &f) != nil || f.Tenant != rq.tenant.Name || f.Realm != rq.realm || rq.a.now().After(f.Expires) {
		return fail("sign-in of another realm or expired")
	}
	q := rq.r.URL.Query()
	if e := q.Get("error"); e != "" {
		return fail("provider answered " + e)
	}
	if q.Get("state") == "" || q.Get("state") != f.State {
		return fail("state mismatch")
	}
	pc := rq.providerConfig(f.Provider)
	if pc == nil {
		return fail("provider removed")
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(rq.r.Context(), rq.a.oidc.client), oidcTimeout)
	defer cancel()
	p, err := rq.a.oidc.provider(ctx, pc.Issuer)
	if err != nil {
		return fail("provider unreachable: " + err.Error())
	}
	cfg, err := rq.oauthConfig(f.Provider, pc, p)
	if err != nil {
		return fail(err.Error())
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return fail("code exchange: " + err.Error())
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return fail("no id_token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: pc.ClientID, Now: rq.a.now}).Verify(ctx, raw)
	if err != nil {
		return fail("id token: " + err.Error())
	}
	if idt.Nonce != f.Nonce {
		return fail("nonce mismatch")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return fail("id token claims: " + err.Error())
	}
	// Providers that keep profile claims out of the ID token serve them at
	// their userinfo endpoint: claims the ID token lacks come from there,
	// for the same subject only.
	if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
		var extra map[string]any
		if ui.Claims(&extra) == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	roles := mapRoles(pc, claims)
	if pc.RequireRole && len(roles) == 0 {
		return fail("no mapped role")
	}
	name, _ := claims["name"].(string)
	email, _ := claims["email"].(string)
	if name == "" {
		name = email
	}
	s := &session{Tenant: rq.tenant.Name, Realm: rq.realm, Subject: f.Provider + ":" + idt.Subject, Name: name,
		Email: email, Roles: roles, Provider: f.Provider}
	setCookie(rq.w, cookieOIDC, "", -1, http.SameSiteLaxMode)
	if err := rq.a.startSession(rq.w, rq.r, s); err != nil {
		return rq.stateError(err)
	}
	mSignIns.WithLabelValues("oidc", "ok").Inc()
	rq.log("signed in", "oidc", zap.String("provider", f.Provider), zap.String("user", s.Subject))
	http.Redirect(rq.w, rq.r, f.Return, http.StatusSeeOther)
	return nil
}

// mapRoles maps the provider's role claim (a string or a list of strings)
// through its role map.
func mapRoles(pc *neo.ProviderConfig, claims map[string]any) []string {
	claim := pc.RoleClaim
	if claim == "" {
		claim = "groups"
	}
	var values []string
	switch v := claims[claim].(type) {
	case string:
		values = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
	}
	var roles []string
	for _, v := range values {
		for _, r := range pc.RoleMap[v] {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	return roles
}
