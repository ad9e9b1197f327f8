package harness

import "fmt"

// NATSChainCaddyfile is the topology the NATS benchmarks compare in one
// process: an edge sending over NATS (port natsEdge) and an edge sending over
// HTTP (port httpEdge), both to the same stage server (port stage, also
// served by a stage gateway for prod/az-a), in front of one echo replica;
// nats-server listens on natsPort.
func NATSChainCaddyfile(admin, natsEdge, httpEdge, stage, replica, natsPort int) string {
	return fmt.Sprintf(natsChain, admin, natsEdge, httpEdge, stage, replica, natsPort)
}

const natsChain = `{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
	servers 127.0.0.1:%[4]d {
		name stage
	}
	nats {
		connection default {
			servers nats://127.0.0.1:%[6]d
		}
	}
	nats_gateway az-a {
		server stage
		stage prod
		zone az-a
	}
}

http://:%[2]d {
	bind 127.0.0.1
	reverse_proxy nats {
		transport nats {
			subject neo.rt.prod.{neo.zone}.acme.orders
			zones az-a
		}
	}
}

http://:%[3]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[4]d
}

http://:%[4]d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%[5]d
}

http://:%[5]d {
	bind 127.0.0.1
	neo_echo {
		replica r1
		max_response_bytes 2147483648
	}
}
`
