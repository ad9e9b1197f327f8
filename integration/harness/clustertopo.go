package harness

import (
	"fmt"
	"strings"
)

// ClusterTenant is the demo tenant of the cluster topology (tests and the
// cluster benchmark): tenant demo, app orders (public), stage prod, one
// replica per zone. Its host is demo.apps.localhost, its app path /orders/.
type ClusterTenant struct {
	// Replicas maps a zone to its replica's address (host:port).
	Replicas map[string]string
}

// Block is the tenant's `tenant` block for the neo global option.
func (ct ClusterTenant) Block() string {
	var b strings.Builder
	b.WriteString("tenant demo {\n\tapp orders {\n\t\tpublic\n\t\tstage prod {\n")
	for _, z := range []string{"az-a", "az-b", "az-c"} {
		if a, ok := ct.Replicas[z]; ok {
			fmt.Fprintf(&b, "\t\t\treplica %s %s\n", a, z)
		}
	}
	b.WriteString("\t\t}\n\t}\n}\n")
	return b.String()
}

// ClusterNode describes one caddy process of the cluster topology.
type ClusterNode struct {
	// Zone of the node (az-a, az-b).
	Zone string
	// ZoneOrder lists the other zones, in failover order.
	ZoneOrder []string
	// Admin, HTTPS and HTTP ports (edge), or Admin and Stage ports (gateway).
	Admin, HTTPS, HTTP, Stage int
	// NATS lists the cluster's client URLs.
	NATS []string
	// StoreDir is the directory of the registry's file store.
	StoreDir string
	// Tenants is inserted into the neo option (tenant blocks); empty when
	// tenants come from the store.
	Tenants string
	// Store, when set, replaces the `store file` line of the neo option
	// (for example a `store nats { ... }` block).
	Store string
	// Storage, when set, is inserted into the global options (for example a
	// `storage neo_nats { ... }` block shared by the edges).
	Storage string
}

func (n ClusterNode) store() string {
	if n.Store != "" {
		return n.Store
	}
	return "store file " + n.StoreDir
}

// ClusterEdgeCaddyfile is an edge of the cluster topology: HTTPS with Caddy's
// internal CA and on-demand certificates for the names the registry routes,
// tenant routing, runtime requests over NATS to the stage gateways (this
// zone first), GETs retried once. The NATS connection is named
// caddy-neo-edge-<zone>.
func ClusterEdgeCaddyfile(n ClusterNode) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	https_port %[2]d
	http_port %[3]d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	auto_https disable_redirects
	log {
		level ERROR
	}
	on_demand_tls {
		permission neo
	}
	%[9]s
	neo_nats {
		connection default {
			servers %[4]s
			name caddy-neo-edge-%[5]s
			reconnect_wait 50ms 500ms
		}
	}
	neo {
		zone %[5]s
		platform_domain platform.localhost
		runtime_domain apps.localhost
		stages dev prod
		zones az-a az-b
		zone_order %[6]s
		%[7]s
		%[8]s
	}
}

https:// {
	tls {
		on_demand
	}
	neo_route
	reverse_proxy nats {
		transport neo_nats {
			zones %[5]s %[6]s
			response_header_timeout 20s
			chunk_timeout 20s
		}
		lb_retries 1
	}
}
`, n.Admin, n.HTTPS, n.HTTP, strings.Join(n.NATS, " "), n.Zone, strings.Join(n.ZoneOrder, " "), n.store(), n.Tenants, n.Storage)
}

// ClusterGatewayCaddyfile is a stage gateway of the cluster topology: stage
// prod of its zone, resolving each request from the registry and proxying it
// to the replicas (its zone first) with the request header
// X-Test-Gateway: <zone>. The NATS connection is named
// caddy-neo-gateway-prod-<zone>.
func ClusterGatewayCaddyfile(n ClusterNode) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	log {
		level ERROR
	}
	servers 127.0.0.1:%[2]d {
		name stage
	}
	neo_nats {
		connection default {
			servers %[3]s
			name caddy-neo-gateway-prod-%[4]s
			reconnect_wait 50ms 500ms
		}
	}
	neo_nats_gateway {
		server stage
		stage prod
		zone %[4]s
		drain_timeout 5s
	}
	neo {
		zone %[4]s
		platform_domain platform.localhost
		runtime_domain apps.localhost
		stages dev prod
		zones az-a az-b
		zone_order %[5]s
		%[6]s
		%[7]s
	}
}

http://:%[2]d {
	bind 127.0.0.1
	vars neo_gateway_zone {http.request.header.Neo-Zone}
	route {
		neo_route
		reverse_proxy {
			dynamic neo
			lb_policy neo_zone {
				zone {http.vars.neo_gateway_zone}
			}
			header_up X-Test-Gateway %[4]s
			lb_try_duration 2s
			fail_duration 1s
			max_fails 1
		}
	}
}
`, n.Admin, n.Stage, strings.Join(n.NATS, " "), n.Zone, strings.Join(n.ZoneOrder, " "), n.store(), n.Tenants)
}
