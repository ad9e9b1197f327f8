package neonats

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("nats", parseGlobalNATS)
	httpcaddyfile.RegisterGlobalOption("nats_gateway", parseGlobalGateway)
}

// parseGlobalNATS parses the `nats` global option. Syntax:
//
//	nats {
//	    embedded [<listen host:port>] {
//	        monitor     <host:port>
//	        server_name <name>
//	        max_payload <size>
//	        jetstream   <store dir>
//	    }
//	    connection <name> {
//	        servers            <url...>
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
// with no `servers` then reach it without a socket. The option may appear
// once.
func parseGlobalNATS(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("nats: the global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "nats", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the `nats` global option.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "embedded":
			if a.Embedded != nil {
				return d.Err("nats: embedded: given twice")
			}
			e := new(Embedded)
			if d.NextArg() {
				e.Listen = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			seen := map[string]bool{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				name := d.Val()
				if seen[name] {
					return d.Errf("nats: embedded: duplicate %q", name)
				}
				seen[name] = true
				var val string
				if !d.AllArgs(&val) {
					return d.ArgErr()
				}
				switch name {
				case "monitor":
					e.Monitor = val
				case "server_name":
					e.ServerName = val
				case "max_payload":
					n, err := humanize.ParseBytes(val)
					if err != nil || n > 64<<20 {
						return d.Errf("nats: embedded: max_payload: want a size up to 64MiB, got %q", val)
					}
					e.MaxPayload = int32(n)
				case "jetstream":
					e.JetStream, e.StoreDir = true, val
				default:
					return d.Errf("nats: embedded: unknown subdirective %q", name)
				}
			}
			a.Embedded = e
		case "connection":
			var name string
			if !d.AllArgs(&name) {
				return d.ArgErr()
			}
			if a.Connections == nil {
				a.Connections = map[string]*Connection{}
			}
			if _, dup := a.Connections[name]; dup {
				return d.Errf("nats: connection %q: given twice", name)
			}
			c := new(Connection)
			if err := c.unmarshal(d); err != nil {
				return err
			}
			a.Connections[name] = c
		default:
			return d.Errf("nats: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

func (c *Connection) unmarshal(d *caddyfile.Dispenser) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("nats: connection: duplicate %q", name)
		}
		seen[name] = true
		args := d.RemainingArgs()
		want := func(lo, hi int) error {
			if len(args) < lo || len(args) > hi {
				return d.ArgErr()
			}
			return nil
		}
		var err error
		switch name {
		case "servers":
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Servers = args
		case "creds_file":
			if err = want(1, 1); err == nil {
				c.CredsFile = args[0]
			}
		case "nkey_seed_file":
			if err = want(1, 1); err == nil {
				c.NkeySeedFile = args[0]
			}
		case "user":
			if err = want(1, 2); err == nil {
				c.User = args[0]
				if len(args) == 2 {
					c.Password = args[1]
				}
			}
		case "token":
			if err = want(1, 1); err == nil {
				c.Token = args[0]
			}
		case "tls_client_cert":
			if err = want(2, 2); err == nil {
				if c.TLS == nil {
					c.TLS = new(ClientTLS)
				}
				c.TLS.CertFile, c.TLS.KeyFile = args[0], args[1]
			}
		case "tls_ca":
			if err = want(1, 1); err == nil {
				if c.TLS == nil {
					c.TLS = new(ClientTLS)
				}
				c.TLS.CAFile = args[0]
			}
		case "inbox_prefix":
			if err = want(1, 1); err == nil {
				c.InboxPrefix = args[0]
			}
		case "name":
			if err = want(1, 1); err == nil {
				c.Name = args[0]
			}
		case "reconnect_wait":
			if err = want(1, 2); err == nil {
				if c.ReconnectWait, err = parseDur(d, args[0]); err == nil && len(args) == 2 {
					c.MaxReconnectWait, err = parseDur(d, args[1])
				}
			}
		case "reconnect_buf_size":
			if err = want(1, 1); err == nil {
				n, perr := humanize.ParseBytes(args[0])
				if perr != nil || n > 1<<30 {
					return d.Errf("nats: connection: reconnect_buf_size: bad size %q", args[0])
				}
				c.ReconnectBufSize = int(n)
			}
		default:
			return d.Errf("nats: connection: unknown subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseDur(d *caddyfile.Dispenser, s string) (caddy.Duration, error) {
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, d.Errf("bad duration %q", s)
	}
	return caddy.Duration(v), nil
}

func parseSize(d *caddyfile.Dispenser, s string) (int, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<30 {
		return 0, d.Errf("bad size %q", s)
	}
	return int(n), nil
}

func parseInt(d *caddyfile.Dispenser, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("want a non-negative integer, got %q", s)
	}
	return n, nil
}

// parseGlobalGateway parses the `nats_gateway` global option, which may be
// repeated (one per gateway). Syntax:
//
//	nats_gateway [<name>] {
//	    server        <http server name>
//	    stage         <stage>
//	    zone          <zone>
//	    tenant        <tenant>
//	    subjects      <subject...>
//	    connection    <nats connection name>
//	    queue_group   <group>
//	    service_name  <micro service name>
//	    chunk_timeout <duration>
//	    chunk_size    <size>
//	    window        <frames>
//	    max_in_flight <n>
//	    drain_timeout <duration>
//	}
func parseGlobalGateway(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(GatewayApp)
	if existing != nil {
		if err := json.Unmarshal(existing.(httpcaddyfile.App).Value, app); err != nil {
			return nil, err
		}
	}
	g := new(Gateway)
	if err := g.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	app.Gateways = append(app.Gateways, g)
	return httpcaddyfile.App{Name: "nats_gateway", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up one gateway (see parseGlobalGateway).
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		g.Name = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("nats_gateway: duplicate %q", name)
		}
		seen[name] = true
		args := d.RemainingArgs()
		if name == "subjects" {
			if len(args) == 0 {
				return d.ArgErr()
			}
			g.Subjects = args
			continue
		}
		if len(args) != 1 {
			return d.ArgErr()
		}
		v := args[0]
		var err error
		switch name {
		case "server":
			g.Server = v
		case "stage":
			g.Stage = v
		case "zone":
			g.Zone = v
		case "tenant":
			g.Tenant = v
		case "connection":
			g.Connection = v
		case "queue_group":
			g.QueueGroup = v
		case "service_name":
			g.ServiceName = v
		case "chunk_timeout":
			g.ChunkTimeout, err = parseDur(d, v)
		case "drain_timeout":
			g.DrainTimeout, err = parseDur(d, v)
		case "chunk_size":
			g.ChunkSize, err = parseSize(d, v)
		case "window":
			g.Window, err = parseInt(d, v)
		case "max_in_flight":
			g.MaxInFlight, err = parseInt(d, v)
		default:
			return d.Errf("nats_gateway: unknown subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	if g.Server == "" {
		return d.Err("nats_gateway: server is required")
	}
	return nil
}

// UnmarshalCaddyfile sets up the transport. Syntax:
//
//	transport nats {
//	    connection              <name>
//	    subject                 <template>
//	    zones                   <zone...>
//	    response_header_timeout <duration>
//	    chunk_timeout           <duration>
//	    chunk_size              <size>
//	    window                  <frames>
//	    gateway_check_interval  <duration>|off
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "nats"
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("transport nats: duplicate %q", name)
		}
		seen[name] = true
		args := d.RemainingArgs()
		if name == "zones" {
			if len(args) == 0 {
				return d.ArgErr()
			}
			t.Zones = args
			continue
		}
		if len(args) != 1 {
			return d.ArgErr()
		}
		v := args[0]
		var err error
		switch name {
		case "connection":
			t.Connection = v
		case "subject":
			t.Subject = v
		case "response_header_timeout":
			t.ResponseHeaderTimeout, err = parseDur(d, v)
		case "chunk_timeout":
			t.ChunkTimeout, err = parseDur(d, v)
		case "chunk_size":
			t.ChunkSize, err = parseSize(d, v)
		case "window":
			t.Window, err = parseInt(d, v)
		case "gateway_check_interval":
			if v == "off" {
				t.GatewayCheckInterval = -1
			} else {
				t.GatewayCheckInterval, err = parseDur(d, v)
			}
		default:
			return d.Errf("transport nats: unknown subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Gateway)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
)
