package integration

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// TestEgressCallersFromRegistry: with `caller_source neo`, the egress gateway
// knows a caller by its replica address in the tenant registry, and follows
// registry changes made through the admin API without a reload.
func TestEgressCallersFromRegistry(t *testing.T) {
	p := startPartner(t)
	ports, err := harness.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := fmt.Sprintf(`{
	admin %s
	neo {
		zone az-a
		stages dev prod
		store file %s
		tenant initech {
			app crm {
				stage prod {
					replica 127.0.0.41:8080 az-a
				}
			}
		}
	}
}
http://:%d {
	bind 127.0.0.1
	neo_egress {
		zone az-a
		source_address 127.0.0.2
		caller_source neo
		tenant initech {
			allow api.partner.localhost:*
		}
		tenant umbrella {
			allow api.partner.localhost:*
		}
		treat_as_external 127.0.0.10
		static_host api.partner.localhost 127.0.0.10
	}
}
`, admin, t.TempDir(), ports[1])
	inst := harness.Start(t, harness.Options{Config: cfg, Admin: admin, WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", ports[1])}})
	g := &gateway{inst: inst, addr: fmt.Sprintf("127.0.0.1:%d", ports[1]), zone: "az-a", src: "127.0.0.2"}
	target := fmt.Sprintf("http://api.partner.localhost:%d/v1/orders", p.httpPort)
	status := func(from string) int {
		resp, err := g.client(from, "", "", p.roots, false).Get(target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status("127.0.0.41"); s != http.StatusOK {
		t.Fatalf("initech's replica 127.0.0.41: %d", s)
	}
	if s := status("127.0.0.42"); s != http.StatusProxyAuthRequired {
		t.Fatalf("an address of no replica: %d, want 407", s)
	}
	// A tenant created at run time: its replica is known at once.
	body := `{"apps":{"web":{"stages":{"prod":{"replicas":[{"address":"127.0.0.42:8080","zone":"az-a"}]}}}}}`
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/umbrella", body); st != 201 {
		t.Fatalf("PUT umbrella: %d %s", st, out)
	}
	if s := status("127.0.0.42"); s != http.StatusOK {
		t.Fatalf("umbrella's new replica 127.0.0.42: %d", s)
	}
	// Deleted: unknown again.
	if st, out, _ := inst.Admin("DELETE", "/neo/tenants/umbrella", nil); st != 200 && st != 204 {
		t.Fatalf("DELETE umbrella: %d %s", st, out)
	}
	if s := status("127.0.0.42"); s != http.StatusProxyAuthRequired {
		t.Fatalf("deleted tenant's replica: %d, want 407", s)
	}
}
