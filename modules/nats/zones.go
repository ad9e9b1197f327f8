package neonats

import (
	"slices"

	"github.com/caddyserver/caddy/v2"
)

// zoneFailover is what the tenant registry (the neo app) offers: the zones
// after this node's own, in failover order. An interface, so that this
// package does not import the registry.
type zoneFailover interface {
	ZoneFailover() []string
}

// registryZones returns the failover order of the config's tenant registry,
// or nil when the config has none.
func registryZones(ctx caddy.Context) []string {
	app, err := ctx.AppIfConfigured("neo")
	if err != nil {
		return nil // no registry; a registry that failed reports its own error
	}
	if zf, ok := app.(zoneFailover); ok {
		return slices.Clone(zf.ZoneFailover())
	}
	return nil
}
