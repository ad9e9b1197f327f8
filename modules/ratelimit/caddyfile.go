package ratelimit

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_rate_limit", cfblock.Handler[Handler])
	httpcaddyfile.RegisterDirectiveOrder("neo_rate_limit", httpcaddyfile.Before, "basic_auth")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_rate_limit {
//	    zone <name> {
//	        match {
//	            <matchers>
//	        }
//	        key         <template>
//	        events      <max events per window>
//	        window      <duration>
//	        memory      <size>     # default 8MiB
//	        ipv4_prefix <bits>     # default 32
//	        ipv6_prefix <bits>     # default 64
//	    }
//	    distributed {
//	        connection <neo_nats connection>  # default "default"
//	        stream     <name>                 # default NEO_RL
//	        subject    <prefix>               # default neo_rl
//	        replicas   <1-5>                  # default 1
//	        interval   <duration>             # default 1s
//	        max_keys   <n>                    # default 10000
//	        max_bytes  <size>                 # default 256MiB
//	    }
//	}
//
// `zone` repeats (one per name); `match` repeats within a zone (any of the
// sets may match).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_rate_limit", func(name string) error {
		switch name {
		case "zone":
			args, err := cfblock.Args(d, 1, 1)
			if err != nil {
				return err
			}
			zn := args[0]
			if _, dup := h.Zones[zn]; dup {
				return d.Errf("neo_rate_limit: zone %q defined twice", zn)
			}
			z, err := parseZone(d, zn)
			if err != nil {
				return err
			}
			if h.Zones == nil {
				h.Zones = map[string]*Zone{}
			}
			h.Zones[zn] = z
		case "distributed":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Distributed = new(Distributed)
			return parseDistributed(d, h.Distributed)
		default:
			return cfblock.Unknown(d, "neo_rate_limit", name)
		}
		return nil
	}, "zone")
}

func parseZone(d *caddyfile.Dispenser, zn string) (*Zone, error) {
	z := new(Zone)
	where := "neo_rate_limit: zone " + zn
	err := cfblock.Walk(d, where, func(name string) error {
		if name == "match" {
			set, err := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
			if err != nil {
				return d.Errf("%s: match: %v", where, err)
			}
			z.MatcherSetsRaw = append(z.MatcherSetsRaw, set)
			return nil
		}
		v, err := cfblock.One(d)
		if err != nil {
			return err
		}
		switch name {
		case "key":
			z.Key = v
		case "events":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("%s: events: want a whole number of at least 1, got %q", where, v)
			}
			z.Events = n
		case "window":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s: window: want a duration above 0, got %q", where, v)
			}
			z.Window = caddy.Duration(dur)
		case "memory":
			n, err := humanize.ParseBytes(v)
			if err != nil || n < minMemory || n > 1<<40 {
				return d.Errf("%s: memory: want a size of at least 64KiB, got %q", where, v)
			}
			z.Memory = int64(n)
		case "ipv4_prefix", "ipv6_prefix":
			limit := 32
			if name == "ipv6_prefix" {
				limit = 128
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > limit {
				return d.Errf("%s: %s: want 1 to %d bits, got %q", where, name, limit, v)
			}
			if name == "ipv4_prefix" {
				z.IPv4Prefix = n
			} else {
				z.IPv6Prefix = n
			}
		default:
			return cfblock.Unknown(d, where, name)
		}
		return nil
	}, "match")
	if err != nil {
		return nil, err
	}
	switch {
	case z.Key == "":
		return nil, d.Errf("%s: key is required", where)
	case z.Events == 0:
		return nil, d.Errf("%s: events is required", where)
	case z.Window == 0:
		return nil, d.Errf("%s: window is required", where)
	}
	return z, nil
}

func parseDistributed(d *caddyfile.Dispenser, ds *Distributed) error {
	const where = "neo_rate_limit: distributed"
	return cfblock.Values(d, where, func(name, v string) error {
		switch name {
		case "connection":
			ds.Connection = v
		case "stream":
			ds.Stream = v
		case "subject":
			ds.Subject = v
		case "replicas", "max_keys":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("%s: %s: want a whole number of at least 1, got %q", where, name, v)
			}
			if name == "replicas" {
				ds.Replicas = n
			} else {
				ds.MaxKeys = n
			}
		case "interval":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 10*time.Millisecond {
				return d.Errf("%s: interval: want a duration of at least 10ms, got %q", where, v)
			}
			ds.Interval = caddy.Duration(dur)
		case "max_bytes":
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1<<20 || n > 1<<50 {
				return d.Errf("%s: max_bytes: want a size of at least 1MiB, got %q", where, v)
			}
			ds.MaxBytes = int64(n)
		default:
			return cfblock.Unknown(d, where, name)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
