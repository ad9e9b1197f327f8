package natshttp

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo_nats_gateway", parseGlobalGateway)
}

// parseGlobalGateway parses the `neo_nats_gateway` global option, which may be
// repeated (one per gateway). Syntax:
//
//	neo_nats_gateway [<name>] {
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
//	    socket_window <frames>
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
	return httpcaddyfile.App{Name: "neo_nats_gateway", Value: caddyconfig.JSON(app, nil)}, nil
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
	err := cfblock.Walk(d, "neo_nats_gateway", func(name string) error {
		if name == "subjects" {
			var err error
			g.Subjects, err = cfblock.Args(d, 1, -1)
			return err
		}
		v, err := cfblock.One(d)
		if err != nil {
			return err
		}
		if ok, err := g.FlowControl.unmarshalSubdirective(d, name, v); ok {
			return err
		}
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
		case "drain_timeout":
			g.DrainTimeout, err = cfblock.Duration(d, name, v)
		case "max_in_flight":
			g.MaxInFlight, err = cfblock.Count(d, name, v)
		default:
			return cfblock.Unknown(d, "neo_nats_gateway", name)
		}
		return err
	})
	if err != nil {
		return err
	}
	if g.Server == "" {
		return d.Err("neo_nats_gateway: server is required")
	}
	return nil
}

// UnmarshalCaddyfile sets up the transport. Syntax:
//
//	transport neo_nats {
//	    connection              <name>
//	    subject                 <template>
//	    zones                   <zone...>
//	    response_header_timeout <duration>
//	    chunk_timeout           <duration>
//	    chunk_size              <size>
//	    window                  <frames>
//	    socket_window           <frames>
//	    gateway_check_interval  <duration>|off
//	    protocol_version        1|2|3
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "neo_nats"
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "transport neo_nats", func(name string) error {
		if name == "zones" {
			var err error
			t.Zones, err = cfblock.Args(d, 1, -1)
			return err
		}
		v, err := cfblock.One(d)
		if err != nil {
			return err
		}
		if ok, err := t.FlowControl.unmarshalSubdirective(d, name, v); ok {
			return err
		}
		switch name {
		case "connection":
			t.Connection = v
		case "subject":
			t.Subject = v
		case "response_header_timeout":
			t.ResponseHeaderTimeout, err = cfblock.Duration(d, name, v)
		case "gateway_check_interval":
			if v == "off" {
				t.GatewayCheckInterval = -1
			} else {
				t.GatewayCheckInterval, err = cfblock.Duration(d, name, v)
			}
		case "protocol_version":
			t.ProtocolVersion, err = cfblock.Count(d, name, v)
		default:
			return cfblock.Unknown(d, "transport neo_nats", name)
		}
		return err
	})
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Gateway)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
)
