package neo

import (
	"context"
	"fmt"
	"sync"
	_ "unsafe" // go:linkname

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
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
// When a tenant or a custom domain is removed, its certificates are also
// evicted from the in-memory certificate cache, so the next handshake for
// its names asks this permission again and is refused.
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

//go:linkname tlsCertCache github.com/caddyserver/caddy/v2/modules/caddytls.certCache
var tlsCertCache *certmagic.Cache

//go:linkname tlsCertCacheMu github.com/caddyserver/caddy/v2/modules/caddytls.certCacheMu
var tlsCertCacheMu sync.RWMutex

// evictCertificates removes the managed certificates of hosts from Caddy's
// certificate cache (caddytls keeps it in an unexported package variable;
// certmagic's RemoveManaged is the public API to drop them).
func evictCertificates(hosts []string) {
	if len(hosts) == 0 {
		return
	}
	tlsCertCacheMu.RLock()
	cache := tlsCertCache
	tlsCertCacheMu.RUnlock()
	if cache == nil {
		return
	}
	subjects := make([]certmagic.SubjectIssuer, len(hosts))
	for i, h := range hosts {
		subjects[i] = certmagic.SubjectIssuer{Subject: h}
	}
	cache.RemoveManaged(subjects)
}

// hosts returns every host name tenant t is served at.
func (g *globals) hosts(t *Tenant) []string {
	out := make([]string, 0, len(g.stages.names)+1+len(t.Config.Domains))
	for i := range g.stages.names {
		out = append(out, g.stages.hostLabel(t.Name, i)+g.runtimeSuffix)
	}
	out = append(out, t.Name+g.platformSuffix)
	for d, dc := range t.Config.Domains {
		if !dc.Pending {
			out = append(out, d)
		}
	}
	return out
}

// removedHosts returns the hosts of old no longer served by new (nil: deleted).
func (g *globals) removedHosts(old, new *Tenant) []string {
	if old == nil {
		return nil
	}
	if new == nil {
		return g.hosts(old)
	}
	var out []string
	for d, dc := range old.Config.Domains {
		if nd, ok := new.Config.Domains[d]; !dc.Pending && (!ok || nd.Pending) {
			out = append(out, d)
		}
	}
	return out
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Permission)(nil)
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
