package natsstorage

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// UnmarshalCaddyfile sets up the storage from Caddyfile tokens, as the
// argument of the `storage` global option:
//
//	storage nats {
//		connection <name>    # nats app connection (default "default")
//		bucket     <name>    # key-value bucket (default neo_certs)
//		replicas   <1-5>     # replicas of buckets this creates (default 1)
//		lock_ttl   <duration> # lock expiry after the holder dies (default 15s)
//		inline_max <size>    # larger values go to the object store (default 256KiB)
//	}
func (n *NATS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "nats"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s: specified more than once", opt)
		}
		seen[opt] = true
		var arg string
		if !d.Args(&arg) || d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "connection":
			n.Connection = arg
		case "bucket":
			n.Bucket = arg
		case "replicas":
			r, err := strconv.Atoi(arg)
			if err != nil {
				return d.Errf("replicas: %q: %v", arg, err)
			}
			n.Replicas = r
		case "lock_ttl":
			ttl, err := caddy.ParseDuration(arg)
			if err != nil {
				return d.Errf("lock_ttl: %q: %v", arg, err)
			}
			n.LockTTL = caddy.Duration(ttl)
		case "inline_max":
			size, err := humanize.ParseBytes(arg)
			if err != nil || size > 1<<30 {
				return d.Errf("inline_max: %q: want a size such as 256KiB", arg)
			}
			n.InlineMax = int(size)
		default:
			return d.Errf("unknown subdirective %q", opt)
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*NATS)(nil)
