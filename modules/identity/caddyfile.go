package identity

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_identity", cfblock.Handler[Binding])
	httpcaddyfile.RegisterDirectiveOrder("neo_identity", httpcaddyfile.After, "basic_auth")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_identity {
//	    tenant        <placeholder or value>   # default {neo.tenant}
//	    stage         <placeholder or value>   # default {neo.stage}
//	    service       <placeholder or value>   # default {neo.service}
//	    roles         <placeholder>            # default {http.auth.user.roles}
//	    runtime_role  <template>               # default {tenant}/{stage}/user
//	    platform_role <template>               # default {tenant}/member
//	}
func (b *Binding) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Values(d, "neo_identity", func(name, v string) error {
		switch name {
		case "tenant":
			b.Tenant = v
		case "stage":
			b.Stage = v
		case "service":
			b.Service = v
		case "roles":
			b.Roles = v
		case "runtime_role":
			b.RuntimeRole = v
		case "platform_role":
			b.PlatformRole = v
		default:
			return cfblock.Unknown(d, "neo_identity", name)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Binding)(nil)
