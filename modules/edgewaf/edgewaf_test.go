package edgewaf

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	_ "github.com/corazawaf/coraza-caddy/v2"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_waf {\n  color x\n }\n}", `invalid key "color"`)
}

// swallowing is a WAF stand-in that wraps the writer the way coraza-caddy
// v2.1.0 does: writes pass through, Flush does nothing, Hijack passes.
type swallowing struct{ holdHead bool }

type swallowWriter struct {
	w        http.ResponseWriter
	holdHead bool
	code     int
}

func (s *swallowWriter) Header() http.Header { return s.w.Header() }
func (s *swallowWriter) WriteHeader(c int) {
	if s.holdHead {
		s.code = c
		return
	}
	s.w.WriteHeader(c)
}
func (s *swallowWriter) Write(b []byte) (int, error) {
	if s.holdHead {
		return len(b), nil // buffered for inspection
	}
	return s.w.Write(b)
}
func (s *swallowWriter) Flush() {}
func (s *swallowWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return s.w.(http.Hijacker).Hijack()
}

func (s swallowing) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(&swallowWriter{w: w, holdHead: s.holdHead}, r)
}

func TestFlushReachesTheClient(t *testing.T) {
	for _, hold := range []bool{false, true} {
		h := Handler{waf: swallowing{holdHead: hold}}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(200)
				w.Write([]byte("first\n"))
				http.NewResponseController(w).Flush()
				time.Sleep(300 * time.Millisecond)
				w.Write([]byte("second\n"))
				return nil
			}))
		}))
		start := time.Now()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		elapsed := time.Since(start)
		resp.Body.Close()
		srv.Close()
		if !hold && (line != "first\n" || elapsed > 250*time.Millisecond) {
			t.Fatalf("the first chunk arrived after %s (%q): flush did not pass through", elapsed, line)
		}
		if hold && elapsed < 250*time.Millisecond {
			t.Fatalf("a response the WAF holds was flushed early (%s)", elapsed)
		}
	}
}

func TestHijackPassesThrough(t *testing.T) {
	h := Handler{waf: swallowing{}}
	hijacked := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			c, _, err := http.NewResponseController(w).Hijack()
			hijacked <- err == nil
			if err == nil {
				c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
				c.Close()
			}
			return nil
		}))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	if !<-hijacked {
		t.Fatal("Hijack did not reach the connection")
	}
}
