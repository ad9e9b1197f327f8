package neonats

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/caddyserver/caddy/v2"

	"github.com/projectneo/caddy-neo/modules/secrets"
)

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

// checkSecrets loads the config's neo_secrets app, if any, before a
// connection uses its credentials: a missing secret is then reported naming
// its variable, not as the server's authorization failure.
func checkSecrets(ctx caddy.Context) error {
	return secrets.CheckFirst(ctx)
}

// Ready reports whether every connection of the app is connected (the
// readiness check of /neo/ready).
func (a *App) Ready() error {
	names := make([]string, 0, len(a.conns))
	for name := range a.conns {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if st := a.conns[name].nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("connection %s: %s", name, strings.ToLower(st.String()))
		}
	}
	return nil
}
