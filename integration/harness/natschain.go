package harness

import "fmt"

// NATSChainCaddyfile is the topology the NATS benchmarks compare in one
// process: an edge sending over NATS (port natsEdge) and an edge sending over
// HTTP (port httpEdge), both to the same stage server (port stage, also
// served by a stage gateway for prod/az-a), in front of one echo replica.
// The HTTP edge sends the stage, zone, tenant and app fields the gateway
// takes from the NATS subject, so both chains deliver the same request;
// nats-server listens on natsPort. With inProcess, caddy runs the NATS server
// itself, without a listener, and its connections reach it without a socket
// (the local topology's arrangement); natsPort is then unused. With
// natsV1Edge > 0, one more edge on that port sends over NATS in framing
// protocol version 1 (the default edge sends version 2).
func NATSChainCaddyfile(admin, natsEdge, httpEdge, stage, replica, natsPort int, inProcess bool, natsV1Edge int) string {
	servers := fmt.Sprintf("connection default {\n\t\t\tservers nats://127.0.0.1:%d\n\t\t}", natsPort)
	if inProcess {
		servers = "embedded {\n\t\t\tanonymous\n\t\t}"
	}
	return fmt.Sprintf(natsChain, admin, natsEdge, httpEdge, stage, replica, servers) + v1Edge(natsV1Edge)
}

func v1Edge(port int) string {
	if port <= 0 {
		return ""
	}
	return fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	reverse_proxy nats {
		transport neo_nats {
			subject neo.rt.prod.{neo.zone}.acme.orders
			zones az-a
			protocol_version 1
		}
	}
}
`, port)
}

// NATSChainCaddyfileEmbeddedTCP is NATSChainCaddyfile with caddy running the
// NATS server itself, listening on natsPort, and its connections reaching
// it over loopback TCP instead of in-process pipes.
func NATSChainCaddyfileEmbeddedTCP(admin, natsEdge, httpEdge, stage, replica, natsPort, natsV1Edge int) string {
	servers := fmt.Sprintf("embedded 127.0.0.1:%[1]d {\n\t\t\tanonymous\n\t\t}\n\t\tconnection default {\n\t\t\tservers nats://127.0.0.1:%[1]d\n\t\t}", natsPort)
	return fmt.Sprintf(natsChain, admin, natsEdge, httpEdge, stage, replica, servers) + v1Edge(natsV1Edge)
}

const natsChain = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
	servers 127.0.0.1:%[4]d {
		name stage
	}
	neo_nats {
		%[6]s
	}
	neo_nats_gateway az-a {
		server stage
		stage prod
		zone az-a
	}
}

http://:%[2]d {
	bind 127.0.0.1
	neo_nats_sockets
	reverse_proxy nats {
		transport neo_nats {
			subject neo.rt.prod.{neo.zone}.acme.orders
			zones az-a
		}
	}
}

http://:%[3]d {
	bind 127.0.0.1
	# the routing fields the stage gateway receives from the NATS subject
	reverse_proxy 127.0.0.1:%[4]d {
		header_up Neo-Stage prod
		header_up Neo-Zone az-a
		header_up Neo-Tenant acme
		header_up Neo-App orders
	}
}

http://:%[4]d {
	bind 127.0.0.1
	# requests from the HTTP edge: Caddy's http transport as it is; from
	# the gateway: WebSockets carried by the gateway after the 101
	reverse_proxy 127.0.0.1:%[5]d {
		transport neo_http
	}
}

http://:%[5]d {
	bind 127.0.0.1
	neo_echo {
		replica r1
		max_response_bytes 2147483648
	}
}
`
