// Package neoegress lets the egress gateway identify callers from the tenant
// registry: `caller_source neo` in a neo_egress block maps the source address
// of a connection to the tenant, stage and app whose replica has that
// address (neo app, ReplicaByIP). It lives apart from both packages so that
// neither depends on the other.
package neoegress

import (
	"fmt"
	"net/netip"

	"github.com/projectneo/caddy-neo/modules/egress"
	"github.com/projectneo/caddy-neo/modules/neo"
)

func init() {
	egress.RegisterCallerSource("neo", func(ctx egress.CallerSourceContext) (egress.CallerResolver, error) {
		app, err := ctx.App("neo")
		if err != nil {
			return nil, fmt.Errorf("caller_source neo needs the neo app (global option neo): %w", err)
		}
		a, ok := app.(*neo.App)
		if !ok {
			return nil, fmt.Errorf("caller_source neo: app neo is %T", app)
		}
		return Resolver{App: a}, nil
	})
}

// Resolver answers caller lookups from the registry's current snapshot, so
// tenants changed through the admin API take effect without a reload.
type Resolver struct{ App *neo.App }

// CallerByAddress maps a replica's address to its tenant, stage and app.
func (r Resolver) CallerByAddress(addr netip.Addr) (egress.Caller, bool) {
	reg := r.App.Registry()
	if reg == nil {
		return egress.Caller{}, false
	}
	o, ok := reg.Snapshot().ReplicaByIP(addr)
	if !ok {
		return egress.Caller{}, false
	}
	return egress.Caller{Tenant: o.Tenant, Stage: o.Stage, App: o.App, Via: "address"}, true
}

// CallerByCredentials: the registry holds no proxy credentials (they are
// configured on the gateway with `credential`).
func (Resolver) CallerByCredentials(string, string) (egress.Caller, bool) {
	return egress.Caller{}, false
}

// Interface guards
var _ egress.CallerResolver = Resolver{}
