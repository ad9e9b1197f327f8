package harness

import "fmt"

// KVNodeCaddyfile is one node of a registry shared through a NATS JetStream
// key-value bucket (neo.stores.nats): admin API on admin, plain HTTP routing
// through the registry on httpPort, NATS at natsPort, the node named node in
// the audit trail.
func KVNodeCaddyfile(admin, httpPort, natsPort int, node string) string {
	return fmt.Sprintf(kvNode, admin, httpPort, natsPort, node)
}

const kvNode = `{
	admin 127.0.0.1:%[1]d
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	log {
		level INFO
	}
	nats {
		connection default {
			servers nats://127.0.0.1:%[3]d
		}
	}
	neo {
		zone az-a
		stages dev prod
		store nats {
			bucket neo_tenants
			node %[4]s
		}
	}
}

http://:%[2]d {
	neo_route
	reverse_proxy {
		dynamic neo
	}
}
`
