package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// benchRequest is a browser-like request head (about 600 bytes).
var benchRequest = "GET /orders/api/items?page=2&sort=name HTTP/1.1\r\nHost: acme-dev.apps.localhost\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n" +
	"Cookie: neo_session=" + strings.Repeat("a", 120) + "\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n\r\n"

// BenchmarkChecker compares, side by side in one run, the checker's cost
// for a pipelined stream of request heads with net/http's own parsing of the
// same stream (what every request costs the server anyway) and reports the
// ratio (go test -run '^$' -bench Checker ./modules/framing/).
func BenchmarkChecker(b *testing.B) {
	const n = 256
	stream := []byte(strings.Repeat(benchRequest, n))
	var chkTime, goTime time.Duration
	c := &checker{}
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		for off := 0; off < len(stream); off += 4096 {
			if _, v := c.feed(stream[off:min(off+4096, len(stream))]); v != nil {
				b.Fatal(v)
			}
		}
		t1 := time.Now()
		br := bufio.NewReader(bytes.NewReader(stream))
		for i := 0; i < n; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, req.Body)
		}
		t2 := time.Now()
		chkTime += t1.Sub(t0)
		goTime += t2.Sub(t1)
	}
	reqs := float64(b.N) * n
	b.ReportMetric(float64(chkTime.Nanoseconds())/reqs, "ns/request-checker")
	b.ReportMetric(float64(goTime.Nanoseconds())/reqs, "ns/request-net/http")
	b.ReportMetric(float64(chkTime)/float64(goTime), "checker/net/http")
}

// BenchmarkCheckerAllocs: the checker allocates nothing per request.
func BenchmarkCheckerAllocs(b *testing.B) {
	stream := []byte(strings.Repeat(benchRequest, 16))
	c := &checker{}
	b.ReportAllocs()
	for b.Loop() {
		if _, v := c.feed(stream); v != nil {
			b.Fatal(v)
		}
	}
}
