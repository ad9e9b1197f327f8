package integration

import (
	"fmt"
	"net/http"
	"testing"
)

// TestEdgeRateLimitTiers runs the local topology with small per-host limits:
// a tenant in the default tier gets NEO_RL_HOST_EVENTS requests per window, a
// tenant with rate_limit_tier large gets NEO_RL_HOST_LARGE_EVENTS, and a tier
// change through the admin API applies to the next request.
func TestEdgeRateLimitTiers(t *testing.T) {
	inst, c := startLocal(t, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_HOST_EVENTS=5", "NEO_RL_HOST_LARGE_EVENTS=12")
	tenant := func(name, tier string) {
		t.Helper()
		body := fmt.Sprintf(`{"rate_limit_tier":%q,"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":"127.0.0.1:9121","zone":"az-a"}]}}}}}`, tier)
		if st, out, _ := inst.Admin("PUT", "/neo/tenants/"+name, body); st != 200 && st != 201 {
			t.Fatalf("PUT %s: %d %s", name, st, out)
		}
	}
	// allowed sends requests until the first 429 and returns how many passed.
	allowed := func(host string, max int) int {
		t.Helper()
		for i := 0; i < max; i++ {
			req, _ := http.NewRequest("GET", "https://"+host+":8443/crm/x", nil)
			status, hdr, _ := do(t, c, req)
			switch status {
			case 200:
			case 429:
				if hdr.Get("Retry-After") == "" {
					t.Fatalf("%s: 429 without Retry-After", host)
				}
				return i
			default:
				t.Fatalf("%s: request %d: status %d", host, i, status)
			}
		}
		return max
	}
	tenant("tierdefault", "")
	tenant("tierlarge", "large")
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/tierbad", `{"rate_limit_tier":"Large!"}`); st != 400 {
		t.Fatalf("bad tier: %d %s (want 400)", st, out)
	}
	if n := allowed("tierdefault.apps.localhost", 30); n != 5 {
		t.Errorf("default tier: %d requests allowed, want 5", n)
	}
	if n := allowed("tierlarge.apps.localhost", 30); n != 12 {
		t.Errorf("large tier: %d requests allowed, want 12", n)
	}
	// Moving tierdefault to the large tier takes it out of the exhausted
	// default zone at once.
	tenant("tierdefault", "large")
	if n := allowed("tierdefault.apps.localhost", 30); n != 12 {
		t.Errorf("after the tier change: %d requests allowed, want 12", n)
	}
}
