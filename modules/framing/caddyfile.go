package framing

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_framing", cfblock.Handler[Handler])
	httpcaddyfile.RegisterDirectiveOrder("neo_framing", httpcaddyfile.Before, "map")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_framing {
//	    read_body_idle <duration>|off   # default 1m; off (or -1) turns it off
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Values(d, "neo_framing", func(name, v string) error {
		switch name {
		case "read_body_idle":
			if v == "-1" || v == "off" {
				h.ReadBodyIdle = caddy.Duration(-time.Nanosecond)
				return nil
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur == 0 {
				return d.Errf("neo_framing: read_body_idle: want a duration (negative: off), got %q", v)
			}
			if dur < 0 {
				dur = -time.Nanosecond
			}
			h.ReadBodyIdle = caddy.Duration(dur)
		default:
			return cfblock.Unknown(d, "neo_framing", name)
		}
		return nil
	})
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens (in a
// server's listener_wrappers block). Syntax:
//
//	neo_framing
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("neo_framing: the listener wrapper takes no block")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
