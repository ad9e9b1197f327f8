package natshttp

import "github.com/caddyserver/caddy/v2"

// zoneFailover is what the tenant registry (the neo app) offers: this node's
// zone, then the others in failover order. An interface, so that this
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
		return zf.ZoneFailover()
	}
	return nil
}
