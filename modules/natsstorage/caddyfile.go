package natsstorage

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

// UnmarshalCaddyfile sets up the storage from Caddyfile tokens, as the
// argument of the `storage` global option:
//
//	storage neo_nats {
//		connection <name>    # nats app connection (default "default")
//		bucket     <name>    # key-value bucket (default neo_certs)
//		replicas   <1-5>     # replicas of buckets this creates (default 1)
//		lock_ttl   <duration> # lock expiry after the holder dies (default 15s)
//		inline_max <size>    # larger values go to the object store (default 256KiB)
//	}
func (n *NATS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "neo_nats"
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Values(d, "storage neo_nats", func(opt, arg string) error {
		switch opt {
		case "connection":
			n.Connection = arg
		case "bucket":
			n.Bucket = arg
		case "replicas":
			r, err := strconv.Atoi(arg)
			if err != nil {
				return d.Errf("storage neo_nats: replicas: %q: %v", arg, err)
			}
			n.Replicas = r
		case "lock_ttl":
			ttl, err := caddy.ParseDuration(arg)
			if err != nil {
				return d.Errf("storage neo_nats: lock_ttl: %q: %v", arg, err)
			}
			n.LockTTL = caddy.Duration(ttl)
		case "inline_max":
			size, err := humanize.ParseBytes(arg)
			if err != nil || size > 1<<30 {
				return d.Errf("storage neo_nats: inline_max: %q: want a size such as 256KiB", arg)
			}
			n.InlineMax = int(size)
		default:
			return cfblock.Unknown(d, "storage neo_nats", opt)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*NATS)(nil)
