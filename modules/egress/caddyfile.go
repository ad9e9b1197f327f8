package egress

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_egress", parseCaddyfile)
	// Early, so that path-matched directives (respond /healthz, ...) never see
	// proxy requests, whose path is the destination's.
	httpcaddyfile.RegisterDirectiveOrder("neo_egress", httpcaddyfile.Before, "redir")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gateway)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_egress {
//	    zone           <name>
//	    source_address <ip>
//	    caller         <ip|cidr> <tenant> [<stage> [<app>]]
//	    credential     <username> <secret_hash> <tenant> [<stage> [<app>]]
//	    caller_source  <name>
//	    tenant <name> {
//	        allow            <pattern>...
//	        max_conns        <n>
//	        bytes_per_second <size>
//	        app <name> {
//	            allow <pattern>...
//	        }
//	    }
//	    internal_ranges   <cidr>...
//	    treat_as_external <cidr>...
//	    static_host       <name> <ip>...
//	    max_conns_per_tenant        <n>
//	    bytes_per_second_per_tenant <size>
//	    connect_timeout <duration>
//	    idle_timeout    <duration>
//	}
//
// caller, credential, tenant, static_host, allow, internal_ranges and
// treat_as_external may repeat; the other subdirectives appear once. Sizes
// accept units (10MB, 512KiB).
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return d.Errf("neo_egress: duplicate subdirective %q", name)
		}
		seen[name] = true
		return nil
	}
	for d.NextBlock(0) {
		name := d.Val()
		switch name {
		case "zone", "source_address", "caller_source":
			if err := once(name); err != nil {
				return err
			}
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			switch name {
			case "zone":
				g.Zone = v
			case "source_address":
				g.SourceAddress = v
			case "caller_source":
				g.CallerSource = v
			}
		case "caller":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 4 {
				return d.ArgErr()
			}
			c := CallerAddress{Address: args[0], Tenant: args[1]}
			if len(args) > 2 {
				c.Stage = args[2]
			}
			if len(args) > 3 {
				c.App = args[3]
			}
			g.Callers = append(g.Callers, c)
		case "credential":
			args := d.RemainingArgs()
			if len(args) < 3 || len(args) > 5 {
				return d.ArgErr()
			}
			c := Credential{Username: args[0], SecretHash: args[1], Tenant: args[2]}
			if len(args) > 3 {
				c.Stage = args[3]
			}
			if len(args) > 4 {
				c.App = args[4]
			}
			g.Credentials = append(g.Credentials, c)
		case "tenant":
			if err := g.unmarshalTenant(d); err != nil {
				return err
			}
		case "internal_ranges", "treat_as_external":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if name == "internal_ranges" {
				g.InternalRanges = append(g.InternalRanges, args...)
			} else {
				g.TreatAsExternal = append(g.TreatAsExternal, args...)
			}
		case "static_host":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			if g.StaticHosts == nil {
				g.StaticHosts = map[string][]string{}
			}
			if _, dup := g.StaticHosts[args[0]]; dup {
				return d.Errf("neo_egress: static_host %q listed twice", args[0])
			}
			g.StaticHosts[args[0]] = args[1:]
		case "max_conns_per_tenant":
			if err := once(name); err != nil {
				return err
			}
			n, err := intArg(d)
			if err != nil {
				return err
			}
			g.MaxConnsPerTenant = n
		case "bytes_per_second_per_tenant":
			if err := once(name); err != nil {
				return err
			}
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			g.BytesPerSecondPerTenant = n
		case "connect_timeout", "idle_timeout":
			if err := once(name); err != nil {
				return err
			}
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("neo_egress: %s: want a positive duration, got %q", name, v)
			}
			if name == "connect_timeout" {
				g.ConnectTimeout = caddy.Duration(dur)
			} else {
				g.IdleTimeout = caddy.Duration(dur)
			}
		default:
			return d.Errf("neo_egress: unknown subdirective %q", name)
		}
	}
	return nil
}

func (g *Gateway) unmarshalTenant(d *caddyfile.Dispenser) error {
	var tenant string
	if !d.Args(&tenant) || d.NextArg() {
		return d.ArgErr()
	}
	for _, p := range g.Policies {
		if p.Tenant == tenant && p.App == "" {
			return d.Errf("neo_egress: tenant %q listed twice", tenant)
		}
	}
	p := Policy{Tenant: tenant}
	var apps []Policy
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "allow":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			p.Allow = append(p.Allow, args...)
		case "max_conns":
			if seen[name] {
				return d.Errf("neo_egress: tenant %q: duplicate %q", tenant, name)
			}
			seen[name] = true
			n, err := intArg(d)
			if err != nil {
				return err
			}
			p.MaxConns = n
		case "bytes_per_second":
			if seen[name] {
				return d.Errf("neo_egress: tenant %q: duplicate %q", tenant, name)
			}
			seen[name] = true
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			p.BytesPerSecond = n
		case "app":
			var app string
			if !d.Args(&app) || d.NextArg() {
				return d.ArgErr()
			}
			if seen["app "+app] {
				return d.Errf("neo_egress: tenant %q: app %q listed twice", tenant, app)
			}
			seen["app "+app] = true
			ap := Policy{Tenant: tenant, App: app, Allow: []string{}}
			for n2 := d.Nesting(); d.NextBlock(n2); {
				if d.Val() != "allow" {
					return d.Errf("neo_egress: tenant %q app %q: unknown subdirective %q (only allow)", tenant, app, d.Val())
				}
				args := d.RemainingArgs()
				if len(args) == 0 {
					return d.ArgErr()
				}
				ap.Allow = append(ap.Allow, args...)
			}
			apps = append(apps, ap)
		default:
			return d.Errf("neo_egress: tenant %q: unknown subdirective %q", tenant, name)
		}
	}
	g.Policies = append(g.Policies, p)
	g.Policies = append(g.Policies, apps...)
	return nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("neo_egress: %s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<50 {
		return 0, d.Errf("neo_egress: %s: want a size such as 1048576 or 10MB, got %q", name, v)
	}
	return int64(n), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Gateway)(nil)
