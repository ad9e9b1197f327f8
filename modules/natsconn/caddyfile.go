package natsconn

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo_nats", parseGlobalNATS)
}

// parseGlobalNATS parses the `neo_nats` global option. Syntax:
//
//	neo_nats {
//	    embedded [<listen host:port>] {
//	        authorization <nats-server config file>
//	        anonymous
//	        monitor       <host:port>
//	        server_name   <name>
//	        max_payload   <size>
//	        jetstream     <store dir>
//	    }
//	    connection <name> {
//	        servers            <url...>
//	        local_user         <user>
//	        creds_file         <path>
//	        nkey_seed_file     <path>
//	        user               <user> [<password>]
//	        token              <token>
//	        tls_client_cert    <cert file> <key file>
//	        tls_ca             <ca file>
//	        inbox_prefix       <subject>
//	        name               <connection name>
//	        reconnect_wait     <first> [<max>]
//	        reconnect_buf_size <size>
//	    }
//	}
//
// `embedded` with no address runs the server in-process only; connections
// with no `servers` then reach it without a socket. It needs one of
// `authorization` (the users and permissions of that file, passwords
// generated into Caddy's data directory; connections name their user with
// `local_user`) or `anonymous` (any client may do anything). The option may
// appear once.
func parseGlobalNATS(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("neo_nats: the global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "neo_nats", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the `neo_nats` global option.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_nats", func(name string) error {
		switch name {
		case "embedded":
			e := new(Embedded)
			if d.NextArg() {
				e.Listen = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := e.unmarshal(d); err != nil {
				return err
			}
			a.Embedded = e
		case "connection":
			cname, err := cfblock.One(d)
			if err != nil {
				return err
			}
			if a.Connections == nil {
				a.Connections = map[string]*Connection{}
			}
			if _, dup := a.Connections[cname]; dup {
				return d.Errf("neo_nats: connection %q: given twice", cname)
			}
			c := new(Connection)
			if err := c.unmarshal(d, cname); err != nil {
				return err
			}
			a.Connections[cname] = c
		default:
			return cfblock.Unknown(d, "neo_nats", name)
		}
		return nil
	}, "connection")
}

func (e *Embedded) unmarshal(d *caddyfile.Dispenser) error {
	return cfblock.Walk(d, "neo_nats: embedded", func(name string) error {
		if name == "anonymous" {
			if err := cfblock.Flag(d); err != nil {
				return err
			}
			e.Anonymous = true
			return nil
		}
		val, err := cfblock.One(d)
		if err != nil {
			return err
		}
		switch name {
		case "authorization":
			e.Authorization = val
		case "monitor":
			e.Monitor = val
		case "server_name":
			e.ServerName = val
		case "max_payload":
			n, err := humanize.ParseBytes(val)
			if err != nil || n > 64<<20 {
				return d.Errf("neo_nats: embedded: max_payload: want a size up to 64MiB, got %q", val)
			}
			e.MaxPayload = int32(n)
		case "jetstream":
			e.JetStream, e.StoreDir = true, val
		default:
			return cfblock.Unknown(d, "neo_nats: embedded", name)
		}
		return nil
	})
}

// unmarshal reads the block of connection cname.
func (c *Connection) unmarshal(d *caddyfile.Dispenser, cname string) error {
	directive := "neo_nats: connection " + strconv.Quote(cname)
	return cfblock.Walk(d, directive, func(name string) error {
		var err error
		var args []string
		switch name {
		case "servers":
			c.Servers, err = cfblock.Args(d, 1, -1)
		case "creds_file":
			c.CredsFile, err = cfblock.One(d)
		case "nkey_seed_file":
			c.NkeySeedFile, err = cfblock.One(d)
		case "user":
			if args, err = cfblock.Args(d, 1, 2); err == nil {
				c.User = args[0]
				if len(args) == 2 {
					c.Password = args[1]
				}
			}
		case "token":
			c.Token, err = cfblock.One(d)
		case "local_user":
			c.LocalUser, err = cfblock.One(d)
		case "tls_client_cert":
			if args, err = cfblock.Args(d, 2, 2); err == nil {
				if c.TLS == nil {
					c.TLS = new(ClientTLS)
				}
				c.TLS.CertFile, c.TLS.KeyFile = args[0], args[1]
			}
		case "tls_ca":
			var ca string
			if ca, err = cfblock.One(d); err == nil {
				if c.TLS == nil {
					c.TLS = new(ClientTLS)
				}
				c.TLS.CAFile = ca
			}
		case "inbox_prefix":
			c.InboxPrefix, err = cfblock.One(d)
		case "name":
			c.Name, err = cfblock.One(d)
		case "reconnect_wait":
			if args, err = cfblock.Args(d, 1, 2); err == nil {
				if c.ReconnectWait, err = cfblock.Duration(d, "reconnect_wait", args[0]); err == nil && len(args) == 2 {
					c.MaxReconnectWait, err = cfblock.Duration(d, "reconnect_wait", args[1])
				}
			}
		case "reconnect_buf_size":
			var v string
			if v, err = cfblock.One(d); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n > 1<<30 {
					return d.Errf("%s: reconnect_buf_size: bad size %q", directive, v)
				}
				c.ReconnectBufSize = int(n)
			}
		default:
			return cfblock.Unknown(d, directive, name)
		}
		return err
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
