package forwarded

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_forwarded x\n}", "wrong argument count")
	adapttest.ExpectError(t, ":9000 {\n neo_forwarded {\n  color x\n }\n}", `unknown subdirective "color"`)
	adapttest.ExpectError(t, ":9000 {\n neo_forwarded {\n  strip\n }\n}", "strip: wrong argument count")
	adapttest.ExpectError(t, ":9000 {\n neo_forwarded {\n  drop_trailers x\n }\n}", "drop_trailers: wrong argument count")
	adapttest.ExpectError(t, ":9000 {\n neo_forwarded {\n  client_ip_header a\n  client_ip_header b\n }\n}", `duplicate subdirective "client_ip_header"`)
}

func TestValidate(t *testing.T) {
	for name, h := range map[string]struct {
		h    Handler
		want string
	}{
		"bad strip":     {Handler{Strip: []string{"X Y"}}, "strip[0]"},
		"strip xff":     {Handler{Strip: []string{"x-forwarded-for"}}, "strip[0]: \"x-forwarded-for\" is set by the handler"},
		"bad client":    {Handler{ClientIPHeader: "a:b"}, "client_ip_header"},
		"client is neo": {Handler{ClientIPHeader: "Neo-Client"}, "client_ip_header"},
		"client is xff": {Handler{ClientIPHeader: "X-Forwarded-For"}, "client_ip_header"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.h.Validate(); err == nil || !strings.Contains(err.Error(), h.want) {
				t.Fatalf("want %q, got %v", h.want, err)
			}
		})
	}
}

func newHandler(t *testing.T, h Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	h.logger = zap.NewNop()
	return &h
}

// request builds a request as Caddy's server hands it to handlers: with the
// vars map (trusted proxy, client IP).
func request(remote string, tls bool, trusted bool, clientIP string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/orders/", nil)
	r.Host = "acme-dev.apps.localhost:8443"
	r.RemoteAddr = remote
	if !tls {
		r.TLS = nil
	} else if r.TLS == nil {
		r.TLS = &tlsState
	}
	for k, v := range hdr {
		r.Header.Add(k, v)
	}
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: trusted, caddyhttp.ClientIPVarKey: clientIP}
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
}

var tlsState = tls.ConnectionState{HandshakeComplete: true}

func serve(t *testing.T, h *Handler, r *http.Request) http.Header {
	t.Helper()
	var got http.Header
	err := h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got = r.Header.Clone()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var spoofed = map[string]string{
	"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "globex.apps.localhost",
	"Forwarded": "for=10.9.9.9;proto=https", "X-Real-IP": "10.9.9.9", "True-Client-IP": "10.9.9.9",
	"Client-IP": "10.9.9.9", "X-Client-IP": "10.9.9.9", "CF-Connecting-IP": "10.9.9.9", "x-original-url": "/admin",
}

// A client's forwarding headers never reach the upstream; the edge's do.
func TestUntrustedClient(t *testing.T) {
	h := newHandler(t, Handler{ClientIPHeader: "X-Real-IP"})
	for _, tc := range []struct {
		remote, xff, forwarded string
		tls                    bool
		proto                  string
	}{
		{"203.0.113.7:4242", "203.0.113.7", `for=203.0.113.7;host="acme-dev.apps.localhost:8443";proto=https`, true, "https"},
		{"[2001:db8::7]:4242", "2001:db8::7", `for="[2001:db8::7]";host="acme-dev.apps.localhost:8443";proto=http`, false, "http"},
		{"[::ffff:203.0.113.7]:4242", "203.0.113.7", `for=203.0.113.7;host="acme-dev.apps.localhost:8443";proto=https`, true, "https"},
	} {
		t.Run(tc.remote, func(t *testing.T) {
			got := serve(t, h, request(tc.remote, tc.tls, false, "203.0.113.99", spoofed))
			for _, k := range DefaultStrip {
				if k != "X-Real-IP" && got.Get(k) != "" {
					t.Errorf("%s reached the upstream: %q", k, got.Get(k))
				}
			}
			want := map[string]string{HeaderXFF: tc.xff, HeaderXFProto: tc.proto, HeaderXFHost: "acme-dev.apps.localhost:8443", HeaderForwarded: tc.forwarded, "X-Real-Ip": "203.0.113.99"}
			for k, v := range want {
				if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("%s: %q, want %q", k, vs, v)
				}
			}
			if _, err := ParseForwarded(got.Get(HeaderForwarded)); err != nil {
				t.Errorf("the edge's Forwarded does not parse: %v", err)
			}
		})
	}
}

// Behind a trusted proxy (a CDN) its X-Forwarded-* stay (reverse_proxy
// appends to them), the edge's hop is appended to its Forwarded, the client
// address is the one Caddy resolved; the client-address headers go anyway.
func TestTrustedProxy(t *testing.T) {
	h := newHandler(t, Handler{ClientIPHeader: "X-Real-IP"})
	got := serve(t, h, request("192.0.2.1:4242", true, true, "198.51.100.7", map[string]string{
		"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "Forwarded": `for=198.51.100.7;proto=https;host=shop.example.com`,
		"CF-Connecting-IP": "10.9.9.9", "X-Real-IP": "10.9.9.9",
	}))
	for k, v := range map[string]string{
		HeaderXFF: "198.51.100.7", HeaderXFProto: "https", "X-Real-Ip": "198.51.100.7", "Cf-Connecting-Ip": "",
		HeaderForwarded: `for=198.51.100.7;proto=https;host=shop.example.com, for=192.0.2.1;host="acme-dev.apps.localhost:8443";proto=https`,
	} {
		if got.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, got.Get(k), v)
		}
	}
	// A malformed Forwarded from the proxy is replaced by the edge's element.
	got = serve(t, h, request("192.0.2.1:4242", true, true, "198.51.100.7", map[string]string{"Forwarded": `for=198.51.100.7;for=1.2.3.4`}))
	if f := got.Get(HeaderForwarded); f != `for=192.0.2.1;host="acme-dev.apps.localhost:8443";proto=https` {
		t.Errorf("malformed prior Forwarded: %q", f)
	}
}

func TestConfiguredStrip(t *testing.T) {
	h := newHandler(t, Handler{Strip: []string{"x-custom-ip"}})
	got := serve(t, h, request("203.0.113.7:1", true, false, "", map[string]string{"X-Custom-Ip": "1.1.1.1", "X-Real-IP": "2.2.2.2"}))
	if got.Get("X-Custom-Ip") != "" || got.Get("X-Real-Ip") != "2.2.2.2" {
		t.Fatalf("strip replaces the default list: %v", got)
	}
}

// Trailers through a real net/http server and client: only declared trailers
// the edge does not control reach the next handler, even when the client
// sends undeclared ones.
func TestTrailers(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop_trailers=%v", drop), func(t *testing.T) {
			h := newHandler(t, Handler{DropTrailers: drop, ClientIPHeader: "X-Real-IP"})
			seen := make(chan http.Header, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					_, _ = io.Copy(io.Discard, r.Body)
					seen <- r.Trailer.Clone()
					return nil
				}))
			}))
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprint(c, "POST /x HTTP/1.1\r\nHost: acme-dev.apps.localhost\r\nTransfer-Encoding: chunked\r\n"+
				"Trailer: Neo-Tenant, X-Checksum, X-Real-IP, Forwarded, neo_stage, Authorization, Cookie\r\n\r\n"+
				"5\r\nhello\r\n0\r\nNeo-Tenant: globex\r\nHost: globex.apps.localhost\r\nX-Checksum: abc\r\nX-Real-IP: 10.9.9.9\r\n"+
				"Forwarded: for=10.9.9.9\r\nNeo_Stage: prod\r\nAuthorization: Bearer x\r\nCookie: s=1\r\nX-Undeclared: 1\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := <-seen
			want := http.Header{"X-Checksum": {"abc"}}
			if drop {
				want = http.Header{}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("trailers after the handler: %v, want %v", got, want)
			}
		})
	}
}

func BenchmarkForwarded(b *testing.B) {
	h := &Handler{}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	r := request("203.0.113.7:4242", true, false, "203.0.113.7", map[string]string{"User-Agent": "bench", "Accept": "*/*"})
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.ServeHTTP(w, r, next)
	}
}
