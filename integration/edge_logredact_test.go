package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// A blocked request's Authorization and Cookie values never reach the WAF's
// audit line or the access log; both carry the same fingerprints instead.
func TestEdgeLogsRedactCredentials(t *testing.T) {
	// the WAF's JSON audit records (off by default: the access line
	// carries the outcome and rule ids)
	t.Setenv("NEO_WAF_AUDIT_LOG", "/dev/stderr")
	replica, _ := recordingReplica(t)
	e := startEdgeSite(t, "import "+harness.RepoRoot()+"/caddyfiles/snippets/edge-global.caddy",
		"log\n\timport neo_edge {\n\t\treverse_proxy "+replica+"\n\t}")
	const token, session = "eyJhbGciOiJFUzI1NiJ9.edge-secret-token", "edge-secret-session-value"
	for _, q := range []string{"/orders/?id=1%27%20OR%20%271%27=%271", "/orders/ok"} {
		req, _ := http.NewRequest(http.MethodGet, e.url(q), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Cookie", "session="+session+"; theme=dark")
		resp, err := e.client("127.0.0.1").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 403, false: 200}[strings.Contains(q, "OR")]; resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", q, resp.StatusCode, want)
		}
	}
	var audit, access []string
	deadline := time.Now().Add(20 * time.Second)
	for len(audit) == 0 || len(access) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("audit lines %d, access lines %d", len(audit), len(access))
		}
		time.Sleep(50 * time.Millisecond)
		audit, access = nil, nil
		for _, l := range strings.Split(e.inst.Logs(), "\n") {
			switch {
			case strings.HasPrefix(l, `{"transaction"`):
				audit = append(audit, l)
			case strings.Contains(l, `"logger":"http.log.access`) && strings.Contains(l, "/orders/"):
				access = append(access, l)
			}
		}
	}
	logs := e.inst.Logs()
	for _, secret := range []string{token, session, "edge-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold %q", secret)
		}
	}
	fp := regexp.MustCompile(`Bearer (fp:[0-9a-f]{16})`)
	a := fp.FindStringSubmatch(audit[0])
	if a == nil || !strings.Contains(audit[0], "session=fp:") {
		t.Fatalf("no fingerprints in the audit line: %s", audit[0])
	}
	for _, l := range access {
		var rec struct {
			Fingerprints map[string]string `json:"credential_fingerprints"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Fingerprints["authorization"] != "Bearer "+a[1] || !strings.HasPrefix(rec.Fingerprints["cookie"], "session=fp:") {
			t.Errorf("access log fingerprints %v, audit %s", rec.Fingerprints, a[1])
		}
	}
}
