package neo

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission is `tls.permission.neo`: an on-demand TLS permission that allows
// a certificate only for a host the registry routes (a Runtime host of an
// existing tenant in any stage, the Platform host of an existing tenant, an
// active custom domain). Anything else is refused at the handshake, before
// storage or any issuer is consulted. The check is a few trie lookups.
//
// When a tenant or a custom domain is removed, its certificates stay in
// Caddy's in-memory certificate cache, which this permission is not asked
// about. Proposed upstream: a public caddytls API to evict managed
// certificates (e.g. (*TLS).EvictCertificates); meanwhile the edge refuses
// unrouted SNI before TLS (caddy.listeners.neo_sni, modules/sni).
//
// Caddyfile:
//
//	on_demand_tls {
//	    permission neo
//	}
type Permission struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (Permission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.neo",
		New: func() caddy.Module { return new(Permission) },
	}
}

// Provision finds the neo app of the config.
func (p *Permission) Provision(ctx caddy.Context) error {
	a, err := neoApp(ctx, "tls.permission.neo")
	if err != nil {
		return err
	}
	p.app = a
	return nil
}

// UnmarshalCaddyfile: `permission neo` takes no arguments.
func (p *Permission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("permission neo: takes no block")
	}
	return nil
}

// CertificateAllowed allows names the registry routes.
func (p *Permission) CertificateAllowed(_ context.Context, name string) error {
	a := Current()
	if a == nil {
		a = p.app
	}
	host, ok := NormalizeHost(name)
	if ok && a != nil && a.reg.Snapshot().Routes(host) {
		return nil
	}
	return fmt.Errorf("%s is not routed by the tenant registry: %w", name, caddytls.ErrPermissionDenied)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Permission)(nil)
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
