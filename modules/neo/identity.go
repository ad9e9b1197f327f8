package neo

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// IdentityConfig is a tenant's identity: who may sign in to its Platform
// (the organization's members) and to the apps of each of its stages (each
// stage's end users), and its API clients. It is tenant data like apps and
// domains: in the tenant file (`identity { ... }`), in the tenant's JSON
// (`tenants.<t>.identity`) and at /neo/tenants/{t}/identity on the admin API;
// the identity module (modules/identity) reads it from the registry on
// every sign-in, so a change applies at once, without a reload.
//
// A realm (the Platform, or one stage) with neither users nor providers
// lets nobody sign in. Realms never share users: a user of acme's dev stage
// is unknown on acme's prod stage and on every other tenant.
type IdentityConfig struct {
	// Platform is the realm of the organization's members, who sign in on
	// the tenant's Platform host. Default: none (nobody).
	Platform *RealmConfig `json:"platform,omitempty"`
	// Stages maps a stage name to the realm of its apps' end users, who sign
	// in on the stage's hosts (Runtime host, custom domains). Default: none.
	Stages map[string]*RealmConfig `json:"stages,omitempty"`
	// Clients are the tenant's API clients (OAuth 2 client credentials), by
	// client id. Created through the admin API (POST .../identity/clients),
	// which shows the secret once and keeps only its hash. Default: none.
	Clients map[string]*ClientConfig `json:"clients,omitempty"`
}

// RealmConfig is who may sign in to one realm: built-in users and external
// OpenID Connect providers.
type RealmConfig struct {
	// Users are the realm's built-in users by user name (lowercase letters,
	// digits and . _ @ -, 1 to 64 characters). Default: none.
	Users map[string]*UserConfig `json:"users,omitempty"`
	// Providers are external OpenID Connect providers by name (a DNS
	// label), used with the authorization code flow and PKCE. Default: none.
	Providers map[string]*ProviderConfig `json:"providers,omitempty"`
}

// UserConfig is a built-in user.
type UserConfig struct {
	// Name is the display name. Default: the user name.
	Name string `json:"name,omitempty"`
	// Email address. Default: none.
	Email string `json:"email,omitempty"`
	// PasswordHash is a bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2id
	// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) hash. Never returned by
	// the admin API. A user given without password_hash and without
	// password through the admin API keeps its current password.
	PasswordHash string `json:"password_hash,omitempty"`
	// Password is a plain-text password: accepted from the admin API (which
	// stores its bcrypt hash instead and never returns it) and in the Caddy
	// config (the local topology's demo users); never kept in the store.
	Password string `json:"password,omitempty"`
	// Roles are passed to the apps in the access token's `roles` claim and
	// the `Neo-User-Roles` header. Default: none.
	Roles []string `json:"roles,omitempty"`
	// Disabled users cannot sign in and cannot renew their sessions.
	// Default: false.
	Disabled bool `json:"disabled,omitempty"`
}

// ProviderConfig is an external OpenID Connect provider.
type ProviderConfig struct {
	// Label is the sign-in button's text. Default: "Sign in with <name>".
	Label string `json:"label,omitempty"`
	// Issuer is the provider's issuer URL (its discovery document is at
	// `<issuer>/.well-known/openid-configuration`): https, or http on a
	// loopback address. Required.
	Issuer string `json:"issuer"`
	// ClientID is this tenant's client id at the provider. Required.
	ClientID string `json:"client_id"`
	// ClientSecret is a reference to the client secret, never the secret
	// itself: `env:<NAME>` reads the edge's environment variable NAME, which
	// must begin with NEO_OIDC_. Default: none (a public client, PKCE only).
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes to ask for. Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// RoleClaim is the ID token claim (a string or a list of strings) that
	// RoleMap maps to roles. Default: groups.
	RoleClaim string `json:"role_claim,omitempty"`
	// RoleMap maps a value of RoleClaim to the roles it grants. Default: none.
	RoleMap map[string][]string `json:"role_map,omitempty"`
	// RequireRole admits only users to whom RoleMap grants at least one
	// role. Default: false (every user the provider authenticates).
	RequireRole bool `json:"require_role,omitempty"`
}

// ClientConfig is an API client (OAuth 2 client credentials).
type ClientConfig struct {
	// Name describes the client. Default: none.
	Name string `json:"name,omitempty"`
	// SecretHash is `sha256:<hex>` of the client secret (a 256-bit random
	// value, so a fast hash is enough). Never returned by the admin API.
	SecretHash string `json:"secret_hash,omitempty"`
	// Realm is "platform" or a stage name: the realm whose tokens the client
	// gets (a Platform token for the public APIs, or a stage's). Default:
	// platform.
	Realm string `json:"realm,omitempty"`
	// Roles are put in the client's tokens. Default: none.
	Roles []string `json:"roles,omitempty"`
	// Created is when the client was created.
	Created time.Time `json:"created,omitzero"`
}

// RealmPlatform names the Platform realm of a tenant (the organization's
// members); stage names name the others.
const RealmPlatform = "platform"

// Limits on identity data.
const (
	MaxUsersPerRealm     = 10000
	MaxProvidersPerRealm = 16
	MaxClients           = 1000
	MaxRoles             = 64
)

// ValidUserName reports whether s is a valid user name: 1 to 64 of
// lowercase letters, digits and . _ @ -.
func ValidUserName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// ValidRole reports whether s is a valid role: 1 to 128 printable ASCII
// characters other than space, comma and quotes.
func ValidRole(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '\'' || c == '\\' {
			return false
		}
	}
	return true
}

// ValidPasswordHash reports whether h looks like a bcrypt or argon2id hash.
func ValidPasswordHash(h string) bool {
	switch {
	case len(h) == 60 && (strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")):
		return true
	case strings.HasPrefix(h, "$argon2id$v=19$m="):
		return strings.Count(h, "$") == 5 && len(h) < 512
	}
	return false
}

func checkRoles(field string, roles []string) error {
	if len(roles) > MaxRoles {
		return fmt.Errorf("%s: at most %d roles, got %d", field, MaxRoles, len(roles))
	}
	for i, r := range roles {
		if !ValidRole(r) {
			return fmt.Errorf("%s[%d]: %q is not a valid role (printable characters, no spaces, commas or quotes, at most 128)", field, i, r)
		}
	}
	return nil
}

// Validate checks a tenant's identity configuration. field prefixes errors
// (for example `tenants.acme.identity`).
func (ic *IdentityConfig) Validate(field string, stages *stageSet) error {
	if ic.Platform != nil {
		if err := ic.Platform.validate(field + ".platform"); err != nil {
			return err
		}
	}
	for _, s := range sortedKeys(ic.Stages) {
		f := field + ".stages." + s
		if _, ok := stages.index[s]; !ok {
			return fmt.Errorf("%s: unknown stage %q (stages: %s)", f, s, strings.Join(stages.names, ", "))
		}
		if ic.Stages[s] == nil {
			return fmt.Errorf("%s: missing realm object", f)
		}
		if err := ic.Stages[s].validate(f); err != nil {
			return err
		}
	}
	if len(ic.Clients) > MaxClients {
		return fmt.Errorf("%s.clients: at most %d clients", field, MaxClients)
	}
	for _, id := range sortedKeys(ic.Clients) {
		f := field + ".clients." + id
		if !ValidClientID(id) {
			return fmt.Errorf("%s: %q is not a valid client id (16 to 64 of letters, digits, - and _)", f, id)
		}
		c := ic.Clients[id]
		if c == nil {
			return fmt.Errorf("%s: missing client object", f)
		}
		if !ValidSecretHash(c.SecretHash) {
			return fmt.Errorf("%s.secret_hash: want sha256:<64 hex digits>", f)
		}
		if c.Realm != "" && c.Realm != RealmPlatform {
			if _, ok := stages.index[c.Realm]; !ok {
				return fmt.Errorf("%s.realm: %q is neither platform nor a stage (stages: %s)", f, c.Realm, strings.Join(stages.names, ", "))
			}
		}
		if err := checkRoles(f+".roles", c.Roles); err != nil {
			return err
		}
		if len(c.Name) > 256 {
			return fmt.Errorf("%s.name: at most 256 bytes", f)
		}
	}
	return nil
}

// ValidClientID reports whether s is a valid client id.
func ValidClientID(s string) bool {
	if len(s) < 16 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidSecretHash reports whether h is `sha256:<64 lowercase hex digits>`.
func ValidSecretHash(h string) bool {
	hex, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (rc *RealmConfig) validate(field string) error {
	if len(rc.Users) > MaxUsersPerRealm {
		return fmt.Errorf("%s.users: at most %d users", field, MaxUsersPerRealm)
	}
	for _, name := range sortedKeys(rc.Users) {
		f := field + ".users." + name
		if !ValidUserName(name) {
			return fmt.Errorf("%s: %q is not a valid user name (1 to 64 of lowercase letters, digits and . _ @ -)", f, name)
		}
		u := rc.Users[name]
		if u == nil {
			return fmt.Errorf("%s: missing user object", f)
		}
		if u.PasswordHash == "" && u.Password == "" {
			return fmt.Errorf("%s: password or password_hash required", f)
		}
		if u.PasswordHash != "" && u.Password != "" {
			return fmt.Errorf("%s: password and password_hash are exclusive", f)
		}
		if u.PasswordHash != "" && !ValidPasswordHash(u.PasswordHash) {
			return fmt.Errorf("%s.password_hash: not a bcrypt or argon2id hash", f)
		}
		if u.Password != "" && (len(u.Password) < 8 || len(u.Password) > 72) {
			return fmt.Errorf("%s.password: want 8 to 72 bytes", f)
		}
		if len(u.Name) > 256 || len(u.Email) > 256 {
			return fmt.Errorf("%s: name and email have at most 256 bytes", f)
		}
		if u.Email != "" && (!strings.Contains(u.Email, "@") || strings.ContainsAny(u.Email, " \t\r\n<>\"")) {
			return fmt.Errorf("%s.email: %q is not an email address", f, u.Email)
		}
		if err := checkRoles(f+".roles", u.Roles); err != nil {
			return err
		}
	}
	if len(rc.Providers) > MaxProvidersPerRealm {
		return fmt.Errorf("%s.providers: at most %d providers", field, MaxProvidersPerRealm)
	}
	for _, name := range sortedKeys(rc.Providers) {
		f := field + ".providers." + name
		if err := checkLabel(f, name); err != nil {
			return err
		}
		p := rc.Providers[name]
		if p == nil {
			return fmt.Errorf("%s: missing provider object", f)
		}
		if err := checkIssuer(f+".issuer", p.Issuer); err != nil {
			return err
		}
		if p.ClientID == "" || len(p.ClientID) > 256 || strings.ContainsAny(p.ClientID, " \t\r\n") {
			return fmt.Errorf("%s.client_id: required, at most 256 bytes without spaces", f)
		}
		if p.ClientSecret != "" {
			env, ok := strings.CutPrefix(p.ClientSecret, "env:")
			if !ok || !strings.HasPrefix(env, "NEO_OIDC_") || !validEnvName(env) {
				return fmt.Errorf("%s.client_secret: want a reference env:NEO_OIDC_<NAME> (the secret stays in the edge's environment, never in the tenant)", f)
			}
		}
		for i, s := range p.Scopes {
			if s == "" || len(s) > 64 || strings.ContainsAny(s, " \t\r\n\"") {
				return fmt.Errorf("%s.scopes[%d]: %q is not a scope", f, i, s)
			}
		}
		if p.RoleClaim != "" && (len(p.RoleClaim) > 64 || strings.ContainsAny(p.RoleClaim, " \t\r\n\"")) {
			return fmt.Errorf("%s.role_claim: %q is not a claim name", f, p.RoleClaim)
		}
		for _, v := range sortedKeys(p.RoleMap) {
			if v == "" || len(v) > 256 {
				return fmt.Errorf("%s.role_map: claim values have 1 to 256 bytes", f)
			}
			if err := checkRoles(f+".role_map."+v, p.RoleMap[v]); err != nil {
				return err
			}
		}
		if len(p.Label) > 128 {
			return fmt.Errorf("%s.label: at most 128 bytes", f)
		}
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func checkIssuer(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s: %q is not an absolute URL without query", field, s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%s: %q: http only on a loopback address, else https", field, s)
		}
	default:
		return fmt.Errorf("%s: %q: want https", field, s)
	}
	return nil
}

// Realm returns the realm config of the Platform (stage == "") or a stage,
// or nil.
func (ic *IdentityConfig) Realm(stage string) *RealmConfig {
	if ic == nil {
		return nil
	}
	if stage == "" || stage == RealmPlatform {
		return ic.Platform
	}
	return ic.Stages[stage]
}

// Redacted returns a copy of the tenant without secrets: no password
// hashes, no plain-text passwords, no client secret hashes. The admin API
// answers with it.
func (t *TenantConfig) Redacted() *TenantConfig {
	if t == nil || t.Identity == nil {
		return t
	}
	c := *t
	c.Identity = t.Identity.Redacted()
	return &c
}

// Redacted returns a deep copy without secrets.
func (ic *IdentityConfig) Redacted() *IdentityConfig {
	if ic == nil {
		return nil
	}
	c := cloneJSON(ic)
	for _, r := range c.realms() {
		for _, u := range r.Users {
			if u != nil {
				u.PasswordHash, u.Password = "", ""
			}
		}
	}
	for _, cl := range c.Clients {
		if cl != nil {
			cl.SecretHash = ""
		}
	}
	return c
}

func (ic *IdentityConfig) realms() []*RealmConfig {
	var out []*RealmConfig
	if ic.Platform != nil {
		out = append(out, ic.Platform)
	}
	for _, r := range ic.Stages {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// KeepSecrets fills the secrets an admin API change left out from the
// tenant's previous identity: a user without password and password_hash
// keeps its current hash, a client without secret_hash keeps its hash. So a
// tenant read from the admin API (which never returns secrets) can be written
// back. It modifies ic.
func (ic *IdentityConfig) KeepSecrets(prev *IdentityConfig) {
	if ic == nil || prev == nil {
		return
	}
	keep := func(cur, old *RealmConfig) {
		if cur == nil || old == nil {
			return
		}
		for name, u := range cur.Users {
			if o := old.Users[name]; u != nil && o != nil && u.Password == "" && u.PasswordHash == "" {
				u.PasswordHash = o.PasswordHash
			}
		}
	}
	keep(ic.Platform, prev.Platform)
	for s, r := range ic.Stages {
		keep(r, prev.Stages[s])
	}
	for id, c := range ic.Clients {
		if o := prev.Clients[id]; c != nil && o != nil && c.SecretHash == "" {
			c.SecretHash = o.SecretHash
		}
	}
}

// HashPasswords replaces every plain-text password with its hash (made by
// hash), so that the store never holds one. It modifies ic.
func (ic *IdentityConfig) HashPasswords(hash func(string) (string, error)) error {
	if ic == nil {
		return nil
	}
	for _, r := range ic.realms() {
		for _, u := range r.Users {
			if u == nil || u.Password == "" {
				continue
			}
			h, err := hash(u.Password)
			if err != nil {
				return err
			}
			u.PasswordHash, u.Password = h, ""
		}
	}
	return nil
}

// HasPlainPasswords reports whether any user has a plain-text password.
func (ic *IdentityConfig) HasPlainPasswords() bool {
	if ic == nil {
		return false
	}
	for _, r := range ic.realms() {
		for _, u := range r.Users {
			if u != nil && u.Password != "" {
				return true
			}
		}
	}
	return false
}

func cloneJSON[T any](v *T) *T {
	data, _ := json.Marshal(v)
	c := new(T)
	_ = json.Unmarshal(data, c)
	return c
}
