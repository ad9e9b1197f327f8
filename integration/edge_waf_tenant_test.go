package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestEdgeWAFTenantPolicy runs the local topology: one WAF for every tenant,
// with globex's override from its tenant Caddyfile (paranoia 2) and a run-time
// tenant's override from the admin API (detection only). Clients cannot pick
// a policy with the headers that carry it, and upstreams never see them.
func TestEdgeWAFTenantPolicy(t *testing.T) {
	inst, c := startLocal(t, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_HOST_EVENTS=100000")
	get := func(host, path string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "https://"+host+":8443"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		status, _, body := do(t, c, req)
		return status, string(body)
	}
	const (
		pl2only = "?q=%40%40version"                                // 942 rules of paranoia level 2 only
		sqli    = "?q=1%20union%20select%20password%20from%20users" // paranoia level 1
	)
	tenant := func(policy string) string {
		return fmt.Sprintf(`{"waf":%s,"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":"127.0.0.1:9121","zone":"az-a"}]}}}}}`, policy)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`{"mode":"detection_only"}`)); st != 201 {
		t.Fatalf("PUT initech: %d %s", st, out)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`{"paranoia":5}`)); st != 400 || !strings.Contains(string(out), "tenants.initech.waf.paranoia") {
		t.Fatalf("bad policy: %d %s (want 400 naming tenants.initech.waf.paranoia)", st, out)
	}

	for _, tc := range []struct {
		name, host, path string
		hdr              []string
		want             int
	}{
		{"benign, edge policy", "acme.apps.localhost", "/orders/x?q=hello", nil, 200},
		{"benign, paranoia 2", "globex.apps.localhost", "/shop/x?q=hello", nil, 200},
		{"benign, detection only", "initech.apps.localhost", "/crm/x?q=hello", nil, 200},
		{"level-2 pattern, edge policy (level 1)", "acme.apps.localhost", "/orders/x" + pl2only, nil, 200},
		{"level-2 pattern, globex at level 2", "globex.apps.localhost", "/shop/x" + pl2only, nil, 403},
		{"level-2 pattern, globex dev stage too", "globex-dev.apps.localhost", "/shop/x" + pl2only, nil, 403},
		{"SQL injection, edge policy", "acme.apps.localhost", "/orders/x" + sqli, nil, 403},
		{"SQL injection, detection only", "initech.apps.localhost", "/crm/x" + sqli, nil, 200},
		{"client asks for detection only", "acme.apps.localhost", "/orders/x" + sqli, []string{"Neo-Waf-Mode", "detection_only"}, 403},
		{"client asks globex for level 1", "globex.apps.localhost", "/shop/x" + pl2only, []string{"Neo-Waf-Paranoia", "1"}, 403},
		{"client asks for level 2", "acme.apps.localhost", "/orders/x" + pl2only, []string{"neo-waf-paranoia", "2"}, 200},
	} {
		if got, body := get(tc.host, tc.path, tc.hdr...); got != tc.want {
			t.Errorf("%s: %s%s: %d, want %d (%.200s)", tc.name, tc.host, tc.path, got, tc.want, body)
		}
	}

	// The policy headers never reach the upstream (the echo replica lists
	// every Neo-* header it received).
	if st, body := get("initech.apps.localhost", "/crm/x"+sqli, "Neo-Waf-Mode", "detection_only", "Neo-Waf-Paranoia", "3"); st != 200 || strings.Contains(body, "Neo-Waf") {
		t.Fatalf("upstream saw the policy headers: %d %s", st, body)
	}

	// A policy change applies at once, without a reload.
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`{"mode":"blocking"}`)); st != 200 {
		t.Fatalf("PUT initech blocking: %d %s", st, out)
	}
	if st, _ := get("initech.apps.localhost", "/crm/x"+sqli); st != 403 {
		t.Fatalf("SQL injection after switching initech to blocking: %d, want 403", st)
	}
}
