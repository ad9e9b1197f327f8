package identity

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo_identity", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("neo_identity", cfblock.Handler[Guard])
	httpcaddyfile.RegisterDirectiveOrder("neo_identity", httpcaddyfile.After, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("neo_signin", cfblock.Handler[Portal])
	httpcaddyfile.RegisterDirectiveOrder("neo_signin", httpcaddyfile.After, "tracing")
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("neo_identity: given twice")
	}
	a := new(App)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "neo_identity", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option:
//
//	neo_identity {
//	    key_encryption_key    <secret>       # required with store; no default
//	    key_encryption_key_previous <secret> # while rotating it; default none
//	    store nats {                         # default: this process's memory
//	        connection      <name>           # default "default"
//	        keys_bucket     <name>           # default neo_identity_keys
//	        sessions_bucket <name>           # default neo_identity_sessions
//	        replicas        <1-5>            # default 1
//	        timeout         <duration>       # default 5s
//	    }
//	    algorithm             ES256|EdDSA    # default ES256
//	    access_token_lifetime <duration>     # default 5m
//	    session_lifetime      <duration>     # default 12h
//	    key_rotation          <duration>     # default 24h
//	    refresh_reuse_grace   <duration>     # default 10s; 0 or off disables
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	dur := func(dst *caddy.Duration) error {
		v, err := cfblock.One(d)
		if err != nil {
			return err
		}
		if v == "off" || v == "0" {
			*dst = caddy.Duration(-1)
			return nil
		}
		t, err := caddy.ParseDuration(v)
		if err != nil {
			return d.Errf("neo_identity: %s: %v", d.Val(), err)
		}
		*dst = caddy.Duration(t)
		return nil
	}
	return cfblock.Walk(d, "neo_identity", func(name string) error {
		var err error
		switch name {
		case "key_encryption_key":
			a.KeyEncryptionKey, err = cfblock.One(d)
		case "key_encryption_key_previous":
			a.KeyEncryptionKeyPrevious, err = cfblock.One(d)
		case "algorithm":
			a.Algorithm, err = cfblock.One(d)
		case "access_token_lifetime":
			err = dur(&a.AccessTokenLifetime)
		case "session_lifetime":
			err = dur(&a.SessionLifetime)
		case "key_rotation":
			err = dur(&a.KeyRotation)
		case "refresh_reuse_grace":
			err = dur(&a.RefreshReuseGrace)
		case "store":
			v, err := cfblock.One(d)
			if err != nil {
				return err
			}
			if v != "nats" {
				return d.Errf("neo_identity: store: unknown store %q (known: nats; without store, state is in memory)", v)
			}
			s := &StoreConfig{}
			a.Store = s
			return cfblock.Walk(d, "neo_identity: store", func(name string) error {
				var err error
				switch name {
				case "connection":
					s.Connection, err = cfblock.One(d)
				case "keys_bucket":
					s.KeysBucket, err = cfblock.One(d)
				case "sessions_bucket":
					s.SessionsBucket, err = cfblock.One(d)
				case "replicas":
					var v string
					if v, err = cfblock.One(d); err == nil {
						if s.Replicas, err = strconv.Atoi(v); err != nil {
							return d.Errf("neo_identity: store replicas: %q is not a number", v)
						}
					}
				case "timeout":
					var v string
					if v, err = cfblock.One(d); err == nil {
						var t time.Duration
						if t, err = caddy.ParseDuration(v); err != nil {
							return d.Errf("neo_identity: store timeout: %v", err)
						}
						s.Timeout = caddy.Duration(t)
					}
				default:
					return cfblock.Unknown(d, "neo_identity: store", name)
				}
				return err
			})
		default:
			return cfblock.Unknown(d, "neo_identity", name)
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the guard:
//
//	neo_identity {
//	    roles <role>...   # default: any user of the realm
//	    no_redirect       # 401 for browsers too
//	}
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_identity", func(name string) error {
		var err error
		switch name {
		case "roles":
			g.Roles, err = cfblock.Args(d, 1, -1)
		case "no_redirect":
			g.NoRedirect = true
			err = cfblock.Flag(d)
		default:
			return cfblock.Unknown(d, "neo_identity", name)
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the sign-in endpoints (no options):
//
//	neo_signin
func (p *Portal) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("neo_signin: takes no block")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Guard)(nil)
	_ caddyfile.Unmarshaler = (*Portal)(nil)
)
