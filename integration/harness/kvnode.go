package harness

import "fmt"

// KVNodeCaddyfile is one node of a registry shared through a NATS JetStream
// key-value bucket (neo.stores.nats): admin API on admin, plain HTTP routing
// through the registry on httpPort, NATS at natsPort, the node named node in
// the audit trail.
func KVNodeCaddyfile(admin, httpPort, natsPort int, node string) string {
	return fmt.Sprintf(kvNode, admin, httpPort, natsPort, fmt.Sprintf("store nats {\n\t\t\tbucket neo_tenants\n\t\t\tnode %s\n\t\t}", node))
}

// FileNodeCaddyfile is KVNodeCaddyfile with the registry's file store in dir
// instead (the single-node baseline).
func FileNodeCaddyfile(admin, httpPort, natsPort int, dir string) string {
	return fmt.Sprintf(kvNode, admin, httpPort, natsPort, "store file "+dir)
}

const kvNode = `{
	admin 127.0.0.1:%[1]d
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	log {
		level INFO
	}
	neo_nats {
		connection default {
			servers nats://127.0.0.1:%[3]d
		}
	}
	neo {
		zone az-a
		stages dev prod
		%[4]s
	}
}

http://:%[2]d {
	neo_route
	reverse_proxy {
		dynamic neo
	}
}
`
