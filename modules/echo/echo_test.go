package echo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coder/websocket"
)

func serve(t *testing.T, e Echo, r *http.Request) (*httptest.ResponseRecorder, error) {
	t.Helper()
	if err := e.Provision(caddyCtx()); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	err := e.ServeHTTP(w, r, nil)
	return w, err
}

func TestReport(t *testing.T) {
	body := strings.Repeat("x", 100000)
	r := httptest.NewRequest("POST", "http://acme-dev.apps.localhost/orders/a%2Fb?q=1&q=2", strings.NewReader(body))
	r.Header.Add("Neo-Tenant", "acme")
	r.Header.Add("neo-trace", "1")
	r.Header.Add("neo-trace", "2")
	r.Header.Add("X-Other", "no")
	w, err := serve(t, Echo{Tenant: "acme", Stage: "dev", App: "orders", Zone: "az-a", Replica: "r1"}, r)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	want := Report{Tenant: "acme", Stage: "dev", App: "orders", Zone: "az-a", Replica: "r1",
		Method: "POST", Host: "acme-dev.apps.localhost", Path: "/orders/a%2Fb", RawQuery: "q=1&q=2", Proto: "HTTP/1.1",
		NeoHeaders: map[string][]string{"Neo-Tenant": {"acme"}, "Neo-Trace": {"1", "2"}},
		BodyLength: 100000, BodySHA256: hex.EncodeToString(sum[:])}
	gotJSON, _ := json.Marshal(rep)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("report\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Neo-Echo-Replica") != "r1" {
		t.Fatalf("status %d headers %v", w.Code, w.Header())
	}
}

func TestStatusAndBodyBytes(t *testing.T) {
	for _, code := range []int{200, 204, 304, 404, 500} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Echo-Status", itoa(code))
		w, err := serve(t, Echo{}, r)
		if err != nil || w.Code != code {
			t.Fatalf("status %d: got %d, %v", code, w.Code, err)
		}
		if (code == 204 || code == 304) && w.Body.Len() != 0 {
			t.Fatalf("status %d with a body", code)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Echo-Body-Bytes", "1000")
	w, err := serve(t, Echo{}, r)
	if err != nil || w.Body.Len() != 1000 {
		t.Fatalf("body bytes: %d, %v", w.Body.Len(), err)
	}
	// Filler output does not depend on read sizes.
	a, _ := io.ReadAll(io.LimitReader(&Filler{}, 1000))
	var b []byte
	f := &Filler{}
	for len(b) < 1000 {
		p := make([]byte, 7)
		f.Read(p)
		b = append(b, p...)
	}
	if string(a) != string(b[:1000]) || string(a) != w.Body.String() {
		t.Fatal("filler depends on read sizes")
	}
}

func TestBadInput(t *testing.T) {
	for name, h := range map[string][2]string{
		"status text":   {"Echo-Status", "ok"},
		"status 1xx":    {"Echo-Status", "101"},
		"bytes neg":     {"Echo-Body-Bytes", "-1"},
		"bytes too big": {"Echo-Body-Bytes", "99999999999999"},
		"events zero":   {"Echo-Events", "0"},
		"events many":   {"Echo-Events", "1000"},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set(h[0], h[1])
			_, err := serve(t, Echo{MaxResponseBytes: 1 << 20}, r)
			he, ok := err.(caddyhttp.HandlerError)
			if !ok || he.StatusCode != 400 {
				t.Fatalf("want a 400 handler error, got %v", err)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Echo-Events", "3")
	r.Header.Set("Echo-Interval", "10ms")
	start := time.Now()
	w, err := serve(t, Echo{Replica: "r"}, r)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("events not spaced by the interval")
	}
	if got := strings.Count(w.Body.String(), "data: "); got != 3 || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d, %q", got, w.Body.String())
	}
}

func TestValidate(t *testing.T) {
	if err := (&Echo{App: "a", Service: "s"}).Validate(); err == nil || !strings.Contains(err.Error(), "app and service") {
		t.Fatalf("got %v", err)
	}
	if err := (&Echo{MaxResponseBytes: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "max_response_bytes") {
		t.Fatalf("got %v", err)
	}
}

func FuzzNeoHeaders(f *testing.F) {
	f.Add("Neo-Tenant", "acme")
	f.Add("neo-", "")
	f.Add("ne", "x")
	f.Fuzz(func(t *testing.T, k, v string) {
		h := http.Header{k: {v}}
		out := NeoHeaders(h)
		for name := range out {
			if !strings.HasPrefix(name, "Neo-") || strings.HasPrefix(name, "Neo-Echo-") {
				t.Fatalf("copied %q", name)
			}
		}
	})
}

// TestWebSocket: a WebSocket handshake gets a 101 naming the replica, and
// each message, text or binary, comes back as sent.
func TestWebSocket(t *testing.T) {
	e := Echo{Replica: "r7"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = e.ServeHTTP(w, r, nil)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(2 << 20)
	if got := resp.Header.Get("Neo-Echo-Replica"); got != "r7" {
		t.Errorf("Neo-Echo-Replica %q, want r7", got)
	}
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{{websocket.MessageText, []byte("hello")}, {websocket.MessageBinary, bytes.Repeat([]byte{0, 1}, 1<<19)}} {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("echo of %d bytes (%v): %d bytes (%v), %v", len(m.data), m.typ, len(got), typ, err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}
