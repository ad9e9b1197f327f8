package neo

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(TierMatcher{})
}

// TierMatcher is the request matcher `http.matchers.neo_rate_tier`: it
// matches when the request's host belongs to a tenant whose rate_limit_tier
// is one of Tiers ("default" stands for the tenant without a tier, and for
// hosts of no tenant). It lets the edge's rate-limit zones, which run before
// tenant routing, give tenants different limits: one zone per tier, each
// matching its tier. The lookup is the registry's host lookup (O(1) in the
// number of tenants); a tier change through the admin API applies to the
// next request.
//
// Caddyfile (inside a rate_limit zone's match block, or a named matcher):
//
//	neo_rate_tier <tier>...
type TierMatcher struct {
	// Tiers to match. Required.
	Tiers []string `json:"tiers,omitempty"`

	app *App
}

// DefaultTier names the tier of tenants without rate_limit_tier.
const DefaultTier = "default"

// CaddyModule returns the Caddy module information.
func (TierMatcher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.neo_rate_tier",
		New: func() caddy.Module { return new(TierMatcher) },
	}
}

// Provision finds the neo app; without one every host is in the default tier.
func (m *TierMatcher) Provision(ctx caddy.Context) error {
	if len(m.Tiers) == 0 {
		return fmt.Errorf("tiers: at least one tier is required")
	}
	for i, t := range m.Tiers {
		if t != DefaultTier {
			if err := checkLabel(fmt.Sprintf("tiers[%d]", i), t); err != nil {
				return err
			}
		}
	}
	if app, err := ctx.AppIfConfigured("neo"); err == nil && app != nil {
		m.app, _ = app.(*App)
	}
	return nil
}

// Tier returns the rate-limit tier of the tenant host belongs to.
func (s *Snapshot) Tier(host string) string {
	if t, ok := s.TenantForHost(host); ok && t.Config.RateLimitTier != "" {
		return t.Config.RateLimitTier
	}
	return DefaultTier
}

// MatchWithError reports whether the request's host is in one of the tiers.
func (m TierMatcher) MatchWithError(r *http.Request) (bool, error) {
	tier := DefaultTier
	if m.app != nil {
		tier = m.app.reg.Snapshot().Tier(r.Host)
	}
	return slices.Contains(m.Tiers, tier), nil
}

// Match implements caddyhttp.RequestMatcher.
func (m TierMatcher) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// UnmarshalCaddyfile sets up the matcher: `neo_rate_tier <tier>...`.
func (m *TierMatcher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // matcher name
	m.Tiers = append(m.Tiers, d.RemainingArgs()...)
	if len(m.Tiers) == 0 {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("neo_rate_tier: no block expected")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner                 = (*TierMatcher)(nil)
	_ caddyhttp.RequestMatcherWithError = (*TierMatcher)(nil)
	_ caddyfile.Unmarshaler             = (*TierMatcher)(nil)
)
