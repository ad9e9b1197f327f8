package egress

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_egress", cfblock.Handler[Gateway])
	// Early, so that path-matched directives (respond /healthz, ...) never see
	// proxy requests, whose path is the destination's.
	httpcaddyfile.RegisterDirectiveOrder("neo_egress", httpcaddyfile.Before, "redir")
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
	return cfblock.Walk(d, "neo_egress", func(name string) error {
		var err error
		switch name {
		case "zone":
			g.Zone, err = cfblock.One(d)
		case "source_address":
			g.SourceAddress, err = cfblock.One(d)
		case "caller_source":
			g.CallerSource, err = cfblock.One(d)
		case "caller":
			args, err := cfblock.Args(d, 2, 4)
			if err != nil {
				return err
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
			args, err := cfblock.Args(d, 3, 5)
			if err != nil {
				return err
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
			err = g.unmarshalTenant(d)
		case "internal_ranges", "treat_as_external":
			args, err := cfblock.Args(d, 1, -1)
			if err != nil {
				return err
			}
			if name == "internal_ranges" {
				g.InternalRanges = append(g.InternalRanges, args...)
			} else {
				g.TreatAsExternal = append(g.TreatAsExternal, args...)
			}
		case "static_host":
			args, err := cfblock.Args(d, 2, -1)
			if err != nil {
				return err
			}
			if g.StaticHosts == nil {
				g.StaticHosts = map[string][]string{}
			}
			if _, dup := g.StaticHosts[args[0]]; dup {
				return d.Errf("neo_egress: static_host %q listed twice", args[0])
			}
			g.StaticHosts[args[0]] = args[1:]
		case "max_conns_per_tenant":
			g.MaxConnsPerTenant, err = intArg(d)
		case "bytes_per_second_per_tenant":
			g.BytesPerSecondPerTenant, err = sizeArg(d)
		case "connect_timeout", "idle_timeout":
			v, err := cfblock.One(d)
			if err != nil {
				return err
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
			return cfblock.Unknown(d, "neo_egress", name)
		}
		return err
	}, "caller", "credential", "tenant", "internal_ranges", "treat_as_external", "static_host")
}

// unmarshalTenant reads `tenant <name> { ... }`: the tenant's policy, then
// one policy per app block.
func (g *Gateway) unmarshalTenant(d *caddyfile.Dispenser) error {
	tenant, err := cfblock.One(d)
	if err != nil {
		return err
	}
	for _, p := range g.Policies {
		if p.Tenant == tenant && p.App == "" {
			return d.Errf("neo_egress: tenant %q listed twice", tenant)
		}
	}
	directive := fmt.Sprintf("neo_egress: tenant %q", tenant)
	p := Policy{Tenant: tenant}
	var apps []Policy
	appSeen := map[string]bool{}
	err = cfblock.Walk(d, directive, func(name string) error {
		var err error
		switch name {
		case "allow":
			var args []string
			if args, err = cfblock.Args(d, 1, -1); err == nil {
				p.Allow = append(p.Allow, args...)
			}
		case "max_conns":
			p.MaxConns, err = intArg(d)
		case "bytes_per_second":
			p.BytesPerSecond, err = sizeArg(d)
		case "app":
			var app string
			if app, err = cfblock.One(d); err != nil {
				return err
			}
			if appSeen[app] {
				return d.Errf("%s: app %q listed twice", directive, app)
			}
			appSeen[app] = true
			ap := Policy{Tenant: tenant, App: app, Allow: []string{}}
			appDirective := fmt.Sprintf("%s app %q", directive, app)
			err = cfblock.Walk(d, appDirective, func(name string) error {
				if name != "allow" {
					return cfblock.Unknown(d, appDirective, name)
				}
				args, err := cfblock.Args(d, 1, -1)
				ap.Allow = append(ap.Allow, args...)
				return err
			}, "allow")
			apps = append(apps, ap)
		default:
			return cfblock.Unknown(d, directive, name)
		}
		return err
	}, "allow", "app")
	if err != nil {
		return err
	}
	g.Policies = append(g.Policies, p)
	g.Policies = append(g.Policies, apps...)
	return nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	v, err := cfblock.One(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("neo_egress: %s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := cfblock.One(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<50 {
		return 0, d.Errf("neo_egress: %s: want a size such as 1048576 or 10MB, got %q", name, v)
	}
	return int64(n), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Gateway)(nil)
