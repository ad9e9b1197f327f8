package logredact

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_log_fingerprints", cfblock.Handler[Handler])
	httpcaddyfile.RegisterDirectiveOrder("neo_log_fingerprints", httpcaddyfile.Before, "map")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_log_fingerprints [<header>...] {
//	    headers <header>...   # default: Authorization Proxy-Authorization Cookie Set-Cookie
//	    key     <secret>      # default: random per process
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.Headers = d.RemainingArgs()
	return cfblock.Walk(d, "neo_log_fingerprints", func(name string) error {
		var err error
		switch name {
		case "headers":
			if len(h.Headers) > 0 {
				return d.Errf("neo_log_fingerprints: headers given inline and in the block")
			}
			h.Headers, err = cfblock.Args(d, 1, -1)
		case "key":
			h.Key, err = cfblock.One(d)
		default:
			return cfblock.Unknown(d, "neo_log_fingerprints", name)
		}
		return err
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
