package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the `admin.api.neo_identity` module: a realm's signing keys
// on the admin address, to rotate them by hand.
//
//	GET  /neo/identity/{tenant}/{realm}/keys    the keys that verify, newest first
//	POST /neo/identity/{tenant}/{realm}/rotate  a new key signs now; the previous
//	                                            ones verify for access_token_lifetime + 1m
//	POST /neo/identity/{tenant}/{realm}/retire  drop every key but the signing one now:
//	                                            tokens they signed are refused (a leaked key);
//	                                            signed-in browsers renew from their session
//
// realm is `platform` or a stage. With a shared store, every edge sees the
// change through the keys bucket's watch. Requests take no body.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.neo_identity", New: func() caddy.Module { return new(AdminAPI) }}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/neo/identity/", Handler: caddy.AdminHandlerFunc(serveKeysAdmin)}}
}

// keysPath splits /neo/identity/{tenant}/{realm}/{op}; ok only for DNS-label
// tenant and realm and a known op.
func keysPath(p string) (tenant, realm, op string, ok bool) {
	rest, found := strings.CutPrefix(p, "/neo/identity/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !label(parts[0]) || !label(parts[1]) {
		return "", "", "", false
	}
	switch parts[2] {
	case "keys", "rotate", "retire":
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// label: a lowercase DNS label of at most 63 characters.
func label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func adminError(status int, err error) error { return caddy.APIError{HTTPStatus: status, Err: err} }

func serveKeysAdmin(w http.ResponseWriter, r *http.Request) error {
	tenant, realm, op, ok := keysPath(r.URL.Path)
	if !ok {
		return adminError(http.StatusNotFound, errors.New("not found: want /neo/identity/{tenant}/{realm}/keys, /rotate or /retire"))
	}
	want := http.MethodPost
	if op == "keys" {
		want = http.MethodGet
	}
	if r.Method != want {
		return adminError(http.StatusMethodNotAllowed, fmt.Errorf("%s: use %s", op, want))
	}
	a := current.Load()
	if a == nil {
		return adminError(http.StatusServiceUnavailable, errors.New("neo_identity is not running"))
	}
	snap, ok := registry()
	if !ok {
		return adminError(http.StatusServiceUnavailable, errors.New("no tenant registry"))
	}
	if _, ok := snap.Tenant(tenant); !ok {
		return adminError(http.StatusNotFound, fmt.Errorf("tenant %q: not found", tenant))
	}
	if realm != neo.RealmPlatform && !slices.Contains(snap.Stages(), realm) {
		return adminError(http.StatusNotFound, fmt.Errorf("realm %q: not %q nor a stage (%s)", realm, neo.RealmPlatform, strings.Join(snap.Stages(), ", ")))
	}
	rk := realmKey(tenant, realm)
	var err error
	switch op {
	case "rotate":
		var k *signingKey
		if k, err = a.keys.change(rk, rotateNow); err == nil {
			a.logger.Info("identity signing key rotated", zap.String("tenant", tenant), zap.String("realm", realm), zap.String("kid", k.kid))
		}
	case "retire":
		var k *signingKey
		if k, err = a.keys.change(rk, retireNow); err == nil {
			a.cache.reset()
			a.logger.Warn("identity signing keys retired: tokens of every other key are refused", zap.String("tenant", tenant), zap.String("realm", realm), zap.String("kid", k.kid))
		}
	}
	if err != nil {
		a.logger.Error("identity signing keys", zap.String("tenant", tenant), zap.String("realm", realm), zap.String("op", op), zap.Error(err))
		return adminError(http.StatusServiceUnavailable, fmt.Errorf("%s keys of %s/%s: %w", op, tenant, realm, err))
	}
	keys, err := a.keys.describe(rk)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, fmt.Errorf("keys of %s/%s: %w", tenant, realm, err))
	}
	if keys == nil {
		keys = []keyInfo{}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"tenant": tenant, "realm": realm, "keys": keys})
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
