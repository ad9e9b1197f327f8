package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/projectneo/caddy-neo/internal/wafcorpus"
)

// TestEdgeWAFBenignCorpus sends the benign corpus (internal/wafcorpus,
// 1,200 requests of REST JSON, GraphQL, data: URLs, base64, JWTs, rich
// text, uploads and searches) to acme's orders app through the edge of the
// local topology (the shipped snippets, paranoia 1, acme's tenant file
// with its one exclusion): at most 1% may be blocked.
func TestEdgeWAFBenignCorpus(t *testing.T) {
	_, c := startLocal(t, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_HOST_EVENTS=100000")
	corpus := wafcorpus.Benign(1)
	blocked, other := map[string]int{}, 0
	n := 0
	for _, r := range corpus {
		req, err := http.NewRequest(r.Method, "https://acme.apps.localhost:8443/orders"+r.Target, bytes.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range r.Headers {
			if strings.EqualFold(h[0], "Authorization") {
				continue // the orders app is public; a foreign token would get 401
			}
			req.Header.Add(h[0], h[1])
		}
		status, _, body := do(t, c, req)
		switch {
		case status == http.StatusForbidden:
			blocked[r.Kind]++
			n++
		case status != http.StatusOK:
			if other++; other <= 5 {
				t.Errorf("%s %s: %d %.200s", r.Method, r.Target, status, body)
			}
		}
	}
	t.Logf("%d of %d benign requests blocked (%.2f%%): %v", n, len(corpus), 100*float64(n)/float64(len(corpus)), blocked)
	if float64(n) > 0.01*float64(len(corpus)) {
		t.Errorf("%d of %d blocked, want at most 1%%", n, len(corpus))
	}
}

// TestEdgeWAFExclusions: a run-time tenant's exclusions from the admin API
// take a rule off its requests (only on its path and argument), without a
// reload, logged with the tenant; they never weaken another tenant's WAF,
// a client cannot name them, and the upstream never sees the header.
func TestEdgeWAFExclusions(t *testing.T) {
	inst, c := startLocal(t, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_HOST_EVENTS=100000")
	// A product title libinjection reads as SQL (CRS 942100, alone).
	const title = `{"title":"Tea Set \"Sakura\" | Shop"}`
	post := func(host, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", "https://"+host+":8443"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		st, _, b := do(t, c, req)
		return st, string(b)
	}
	tenant := func(exclusions string) string {
		return fmt.Sprintf(`{"waf":{"exclusions":%s},"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":"127.0.0.1:9121","zone":"az-a"}]}}}}}`, exclusions)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`[]`)); st != 201 {
		t.Fatalf("PUT initech: %d %s", st, out)
	}
	if st, _ := post("initech.apps.localhost", "/crm/api/products", title); st != 403 {
		t.Fatalf("without exclusions: %d, want 403 (942100)", st)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`[{"rules":["942100"],"path":"/crm/api/*","args":["json.title"]}]`)); st != 200 {
		t.Fatalf("PUT initech exclusions: %d %s", st, out)
	}
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`[{"rules":["942100x"]}]`)); st != 400 || !strings.Contains(string(out), "tenants.initech.waf.exclusions[0].rules[0]") {
		t.Fatalf("bad exclusion: %d %s (want 400 naming the field)", st, out)
	}
	for _, tc := range []struct {
		name, host, path, body string
		hdr                    []string
		want                   int
	}{
		{"excluded rule, path and argument", "initech.apps.localhost", "/crm/api/products", title, nil, 200},
		{"another path of the tenant", "initech.apps.localhost", "/crm/admin/products", title, nil, 403},
		{"another argument", "initech.apps.localhost", "/crm/api/products", `{"name":"Tea Set \"Sakura\" | Shop"}`, nil, 403},
		{"path spelled with dot segments", "initech.apps.localhost", "/crm/admin/../api/products", title, nil, 403},
		{"another tenant", "acme.apps.localhost", "/orders/api/products", title, nil, 403},
		{"another tenant naming initech's set", "acme.apps.localhost", "/orders/api/products", title, []string{"Neo-Waf-Exclusions", "1.1"}, 403},
		{"a real attack in the excluded argument", "initech.apps.localhost", "/crm/api/products", `{"title":"<script>alert(1)</script>"}`, nil, 403},
	} {
		if got, body := post(tc.host, tc.path, tc.body, tc.hdr...); got != tc.want {
			t.Errorf("%s: %s%s: %d, want %d (%.200s)", tc.name, tc.host, tc.path, got, tc.want, body)
		}
	}
	if st, body := post("initech.apps.localhost", "/crm/api/products", title); st != 200 || strings.Contains(body, "Neo-Waf") {
		t.Errorf("upstream saw the exclusion header: %d %s", st, body)
	}
	if !strings.Contains(inst.Logs(), `"msg":"waf exclusions in force","tenant":"initech"`) {
		t.Errorf("no log line with the tenant's exclusions")
	}
	// Removing the exclusion applies to the next request.
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/initech", tenant(`[]`)); st != 200 {
		t.Fatalf("PUT initech: %d %s", st, out)
	}
	if st, _ := post("initech.apps.localhost", "/crm/api/products", title); st != 403 {
		t.Fatalf("after removing the exclusion: %d, want 403", st)
	}
}
