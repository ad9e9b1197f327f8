package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// TestLocalWebSocketOverNATS: in the local topology a WebSocket to a
// tenant's app goes edge (TLS, limits, WAF, neo_route) -> NATS -> stage
// gateway -> neo_echo replica and echoes (it hung at the WAF before neo_waf
// sent the 101 past coraza-caddy's writer); a socket to another tenant's
// app name under a tenant's host gets no socket.
func TestLocalWebSocketOverNATS(t *testing.T) {
	inst, c := startLocal(t)
	// WebSockets use HTTP/1.1's Upgrade (as browsers do): a client that
	// negotiates HTTP/2 cannot upgrade.
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	h1 := harness.Client("127.0.0.1:8443", roots)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// orders is private: the signed-in demo user's token
	auth := http.Header{"Authorization": {"Bearer " + localToken(t, c, "acme.apps.localhost")}}
	ws, resp, err := websocket.Dial(ctx, "wss://acme.apps.localhost:8443/orders/ws", &websocket.DialOptions{HTTPClient: h1, HTTPHeader: auth})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	defer func() { _ = ws.CloseNow() }()
	if resp.Header.Get("Neo-Echo-Replica") == "" {
		t.Errorf("101 without Neo-Echo-Replica: %v", resp.Header)
	}
	for i := range 100 {
		want := fmt.Sprintf("hello %d", i)
		if err := ws.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.Read(ctx); err != nil || string(got) != want {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}

	// acme's app name under globex's host: globex has no app "orders"
	other, resp, err := websocket.Dial(ctx, "wss://globex.apps.localhost:8443/orders/ws", &websocket.DialOptions{HTTPClient: h1, HTTPHeader: auth})
	if err == nil {
		other.CloseNow()
		t.Fatal("a socket to acme's app through globex's host")
	}
	if resp == nil || resp.StatusCode == 101 || resp.StatusCode < 400 {
		t.Fatalf("cross-tenant handshake: %v %v", resp, err)
	}
	t.Logf("cross-tenant handshake answered %d", resp.StatusCode)
}

// TestREADMEWebSocketClient runs the README's neo-wsclient command, exactly
// as written there, against the local topology: both messages come back.
func TestREADMEWebSocketClient(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmdline string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "go run ./cmd/neo-wsclient ") {
			cmdline = l
		}
	}
	if cmdline == "" {
		t.Fatal("README.md has no `go run ./cmd/neo-wsclient` command")
	}
	startLocal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = harness.RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	if string(out) != "hello\nworld\n" {
		t.Fatalf("%s printed %q, want the two messages back", cmdline, out)
	}
}
