package echo

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_echo", cfblock.Handler[Echo])
	httpcaddyfile.RegisterDirectiveOrder("neo_echo", httpcaddyfile.Before, "respond")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_echo {
//	    tenant   <name>
//	    stage    <name>
//	    app      <name>
//	    service  <name>
//	    zone     <name>
//	    replica  <id>
//	    max_response_bytes <n>
//	}
//
// Every subdirective is optional and may appear once.
func (e *Echo) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Values(d, "neo_echo", func(name, val string) error {
		switch name {
		case "tenant":
			e.Tenant = val
		case "stage":
			e.Stage = val
		case "app":
			e.App = val
		case "service":
			e.Service = val
		case "zone":
			e.Zone = val
		case "replica":
			e.Replica = val
		case "max_response_bytes":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return d.Errf("neo_echo: max_response_bytes: want a non-negative integer, got %q", val)
			}
			e.MaxResponseBytes = n
		default:
			return cfblock.Unknown(d, "neo_echo", name)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Echo)(nil)
