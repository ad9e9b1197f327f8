package sni

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkHandshakeRequest: a new TLS 1.3 connection and one HTTP/1.1
// request over loopback to two servers with the same certificate, one
// behind neo_sni (the name is in Allow: the full ClientHello read, parse and
// replay) and one without, alternated in one loop. Reports ns per
// connection for each and the ratio sni/plain.
func BenchmarkHandshakeRequest(b *testing.B) {
	cert := selfSigned(b)
	start := func(wrap bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ln.Close() })
		var inner net.Listener = ln
		if wrap {
			lw := newWrapper(b, "console.example.com")
			lw.logger = zap.NewNop()
			inner = lw.WrapListener(ln)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
		b.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	with, without := start(true), start(false)
	get := func(addr string) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "console.example.com", InsecureSkipVerify: true}) //nolint:gosec // self-signed
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: console.example.com\r\nConnection: close\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAll(c); err != nil {
			b.Fatal(err)
		}
	}
	var tWith, tWithout time.Duration
	for b.Loop() {
		t0 := time.Now()
		get(with)
		t1 := time.Now()
		get(without)
		t2 := time.Now()
		tWith += t1.Sub(t0)
		tWithout += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tWith.Nanoseconds())/n, "ns/conn-neo_sni")
	b.ReportMetric(float64(tWithout.Nanoseconds())/n, "ns/conn-plain")
	b.ReportMetric(float64(tWith)/float64(tWithout), "neo_sni/plain")
}
