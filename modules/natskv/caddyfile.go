package natskv

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

// UnmarshalCaddyfile sets up the store from the `store nats` line of the
// `neo` global option:
//
//	store nats {
//	    connection <name>       # nats app connection, default "default"
//	    bucket     <name>       # default neo_tenants
//	    replicas   <1-5>        # default 1
//	    history    <1-64>       # default 64
//	    timeout    <duration>   # default 5s
//	    node       <name>       # default: host name
//	}
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Values(d, "store nats", func(name, v string) error {
		switch name {
		case "connection":
			s.Connection = v
		case "bucket":
			s.Bucket = v
		case "node":
			s.Node = v
		case "replicas", "history":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("store nats: %s: want a number, got %q", name, v)
			}
			if name == "replicas" {
				s.Replicas = n
			} else {
				s.HistoryDepth = n
			}
		case "timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("store nats: timeout: %v", err)
			}
			s.Timeout = caddy.Duration(dur)
		default:
			return cfblock.Unknown(d, "store nats", name)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Store)(nil)
