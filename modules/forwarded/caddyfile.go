package forwarded

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_forwarded", cfblock.Handler[Handler])
	httpcaddyfile.RegisterDirectiveOrder("neo_forwarded", httpcaddyfile.Before, "map")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_forwarded {
//	    strip            <header>...   # replaces the default list
//	    client_ip_header <header>
//	    drop_trailers
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_forwarded", func(name string) error {
		var err error
		switch name {
		case "strip":
			h.Strip, err = cfblock.Args(d, 1, -1)
		case "client_ip_header":
			h.ClientIPHeader, err = cfblock.One(d)
		case "drop_trailers":
			err = cfblock.Flag(d)
			h.DropTrailers = true
		default:
			return cfblock.Unknown(d, "neo_forwarded", name)
		}
		return err
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
