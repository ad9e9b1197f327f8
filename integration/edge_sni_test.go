package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEdgeRefusesRemovedSNI: a run-time tenant's host gets an on-demand
// certificate and serves; after the tenant is deleted through the admin API
// its certificate is still in Caddy's in-memory cache (caddytls has no public
// API to evict it), yet a handshake naming the host gets a TLS
// unrecognized_name alert from neo_sni, before TLS.
func TestEdgeRefusesRemovedSNI(t *testing.T) {
	inst, c := startLocal(t)
	const host = "snigone.apps.localhost"
	body := `{"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":"127.0.0.1:9121","zone":"az-a"}]}}}}}`
	if st, out, _ := inst.Admin("PUT", "/neo/tenants/snigone", body); st != 200 && st != 201 {
		t.Fatalf("PUT: %d %s", st, out)
	}
	req, _ := http.NewRequest("GET", "https://"+host+":8443/crm/x", nil)
	if status, _, _ := do(t, c, req); status == 0 {
		t.Fatal("no response")
	}
	handshake := func() error {
		d := &net.Dialer{Timeout: 30 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:8443", &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec // only whether the handshake happens matters
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
	if err := handshake(); err != nil {
		t.Fatalf("handshake for the routed host: %v", err)
	}
	if st, out, _ := inst.Admin("DELETE", "/neo/tenants/snigone", nil); st != 200 && st != 204 {
		t.Fatalf("DELETE: %d %s", st, out)
	}
	err := handshake()
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("handshake for the removed host: %v, want an unrecognized_name alert", err)
	}
	// the line is written before the alert; it reaches the harness through
	// the process's stderr pipe, read concurrently
	for i := 0; !strings.Contains(inst.Logs(), "TLS server name refused"); i++ {
		if i == 3000 { // a minute: the line never came
			t.Fatal(fmt.Sprintf("no log line for the refusal:\n%s", inst.Logs()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
