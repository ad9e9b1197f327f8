// Package identity provides neo_identity, which binds a signed-in user to the
// tenant and stage of the request. It runs after caddy-security's `authorize`
// (which validates the token's signature, expiry and source) and refuses, with
// 403, a user who holds no role for the tenant and stage the route resolved:
// a valid acme token is refused on every globex host, even when both tenants'
// tokens are signed with the same key.
//
// Roles are plain strings in the token's `roles` claim:
//
//	<tenant>/<stage>/user   an end user of the tenant's apps in that stage
//	<tenant>/member         a member of the tenant's organization (Platform)
//
// Tenant and stage names are DNS labels, so a role names exactly one tenant
// and stage.
package identity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(Binding{})
}

// Binding is the neo_identity handler.
type Binding struct {
	// Tenant of the request. Default: {neo.tenant}.
	Tenant string `json:"tenant,omitempty"`
	// Stage of the request (runtime requests). Default: {neo.stage}.
	Stage string `json:"stage,omitempty"`
	// Service of the request; non-empty means a Platform request. Default: {neo.service}.
	Service string `json:"service,omitempty"`
	// Roles of the signed-in user, space-separated. Default: {http.auth.user.roles}
	// (set by caddy-security's authorize).
	Roles string `json:"roles,omitempty"`
	// RuntimeRole is the role a runtime request needs. Default: {tenant}/{stage}/user
	// where {tenant} and {stage} are the values above.
	RuntimeRole string `json:"runtime_role,omitempty"`
	// PlatformRole is the role a Platform request needs. Default: {tenant}/member.
	PlatformRole string `json:"platform_role,omitempty"`

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Binding) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_identity",
		New: func() caddy.Module { return new(Binding) },
	}
}

// Provision fills defaults.
func (b *Binding) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&b.Tenant, "{neo.tenant}")
	def(&b.Stage, "{neo.stage}")
	def(&b.Service, "{neo.service}")
	def(&b.Roles, "{http.auth.user.roles}")
	def(&b.RuntimeRole, "{tenant}/{stage}/user")
	def(&b.PlatformRole, "{tenant}/member")
	return nil
}

// Validate checks the role templates.
func (b *Binding) Validate() error {
	if !strings.Contains(b.RuntimeRole, "{tenant}") {
		return fmt.Errorf("runtime_role: %q must contain {tenant}, or tokens of one tenant would open another's apps", b.RuntimeRole)
	}
	if !strings.Contains(b.PlatformRole, "{tenant}") {
		return fmt.Errorf("platform_role: %q must contain {tenant}", b.PlatformRole)
	}
	return nil
}

var errNotBound = errors.New("the signed-in user holds no role for this tenant and stage")

// ServeHTTP lets the request through only if the user holds the required role.
func (b Binding) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	tenant := repl.ReplaceAll(b.Tenant, "")
	stage := repl.ReplaceAll(b.Stage, "")
	service := repl.ReplaceAll(b.Service, "")
	roles := repl.ReplaceAll(b.Roles, "")
	want, reason := Required(b.RuntimeRole, b.PlatformRole, tenant, stage, service)
	if reason == "" && !HasRole(roles, want) {
		reason = "no role " + want
	}
	if reason != "" {
		if ce := b.logger.Check(zapcore.InfoLevel, "identity refused"); ce != nil {
			user, _ := repl.GetString("http.auth.user.id")
			ce.Write(zap.String("tenant", tenant), zap.String("stage", stage), zap.String("service", service),
				zap.String("user", user), zap.String("reason", reason))
		}
		return caddyhttp.Error(http.StatusForbidden, errNotBound)
	}
	return next.ServeHTTP(w, r)
}

// Required returns the role a request needs, or a reason to refuse it when
// the request has no tenant (or, for runtime requests, no stage): the binding
// fails closed.
func Required(runtimeTpl, platformTpl, tenant, stage, service string) (role, reason string) {
	if !validName(tenant) {
		return "", "no resolved tenant"
	}
	if service != "" {
		return strings.ReplaceAll(platformTpl, "{tenant}", tenant), ""
	}
	if !validName(stage) {
		return "", "no resolved stage"
	}
	return strings.ReplaceAll(strings.ReplaceAll(runtimeTpl, "{tenant}", tenant), "{stage}", stage), ""
}

// validName reports whether s is a DNS label (lower case), as registry names are.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s[0] != '-' && s[len(s)-1] != '-'
}

// HasRole reports whether the space-separated roles hold want exactly.
func HasRole(roles, want string) bool {
	for _, r := range strings.Fields(roles) {
		if r == want {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Binding)(nil)
	_ caddy.Validator             = (*Binding)(nil)
	_ caddyhttp.MiddlewareHandler = (*Binding)(nil)
)
