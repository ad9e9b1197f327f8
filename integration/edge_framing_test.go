package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

// rawTLS opens an HTTP/1.1 connection over TLS to the edge.
func (e *fwdEdge) rawTLS(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.https,
		&tls.Config{RootCAs: e.roots.RootCAs, ServerName: "acme-dev.apps.localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// a bound for a broken server, not a measurement: the answers come at once
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// waitLog waits until the edge's log has a line containing all of parts.
func waitLog(t *testing.T, inst *harness.Instance, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(inst.Logs(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Malformed HTTP/1.1 framing, sent over raw TLS connections to the edge
// built from this repository: 400 and a log line naming the reason, never a
// 5xx; well-formed requests (leading zeros in chunk sizes, chunk extensions,
// pipelining, a protocol switch) pass.
func TestEdgeMalformedFraming(t *testing.T) {
	replica, _ := recordingReplica(t)
	e := startForwardedEdge(t, replica, "import "+harness.RepoRoot()+"/caddyfiles/snippets/edge-global.caddy")
	_, port, _ := net.SplitHostPort(e.https)
	head := "POST /orders/x HTTP/1.1\r\nHost: acme-dev.apps.localhost:" + port + "\r\nContent-Type: text/plain\r\n"
	chunked := head + "Transfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, req, reason string
		status            int
	}{
		{"chunk size leading zeros beyond 16 digits", chunked + "00000000000000005\r\nhello\r\n0\r\n\r\n", "more than 16 hexadecimal digits", 400},
		{"chunk size overflow", chunked + "FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", "more than 16 hexadecimal digits", 400},
		{"chunk size invalid hex", chunked + "5g\r\nhello\r\n0\r\n\r\n", "invalid chunk size", 400},
		{"chunk data without CRLF", chunked + "5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF", 400},
		{"chunk line bare LF", chunked + "5\nhello\r\n0\r\n\r\n", "bare LF line ending", 400},
		{"body shorter than declared", "", "body ended before its declared end", 400},
		{"Content-Length and Transfer-Encoding", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "both Content-Length and Transfer-Encoding", 400},
		{"differing Content-Length", head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "conflicting Content-Length fields", 400},
		{"Content-Length list", head + "Content-Length: 5, 5\r\n\r\nhello", `invalid Content-Length \"5, 5\"`, 400},
		{"bare LF line endings", strings.ReplaceAll(head, "\r\n", "\n") + "Content-Length: 5\n\nhello", "bare LF line ending", 400},
		{"one bare LF", head + "X-A: 1\nContent-Length: 5\r\n\r\nhello", "bare LF line ending", 400},
		{"unsupported Transfer-Encoding", head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", `unsupported Transfer-Encoding \"gzip, chunked\"`, 400},
		{"obsolete line folding", head + "X-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", "obsolete line folding", 400},
		{"second pipelined request malformed", "GET /orders/x HTTP/1.1\r\nHost: acme-dev.apps.localhost:" + port + "\r\n\r\n" + head + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "both Content-Length", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rawTLS(t)
			if tc.req == "" {
				// declares 10 bytes, sends 5, closes its side
				fmt.Fprint(c, head+"Content-Length: 10\r\n\r\nhello")
				c.CloseWrite()
			} else {
				fmt.Fprint(c, tc.req)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if strings.HasPrefix(tc.name, "second") {
				if resp.StatusCode != 200 {
					t.Fatalf("first pipelined request: %d", resp.StatusCode)
				}
				if resp, err = http.ReadResponse(br, nil); err != nil {
					t.Fatal(err)
				}
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			waitLog(t, e.inst, "malformed request", tc.reason)
		})
	}
	t.Run("well-formed", func(t *testing.T) {
		c := e.rawTLS(t)
		fmt.Fprint(c, chunked+"0005;name=value\r\nhello\r\n0\r\n\r\n"+chunked+"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"+
			head+"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok")
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("response %d: %d", i, resp.StatusCode)
			}
		}
	})
}

// A request declaring a body above the limit (28 MiB) is refused with 413
// as soon as its head is read: the client sends 1 KiB and waits.
func TestEdgeEarlyBodyLimit(t *testing.T) {
	replica, _ := recordingReplica(t)
	e := startForwardedEdge(t, replica, "import "+harness.RepoRoot()+"/caddyfiles/snippets/edge-global.caddy")
	_, port, _ := net.SplitHostPort(e.https)
	for _, declared := range []int{30 << 20, 28<<20 + 1} {
		c := e.rawTLS(t)
		fmt.Fprintf(c, "POST /orders/x HTTP/1.1\r\nHost: acme-dev.apps.localhost:%s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s", port, declared, strings.Repeat("x", 1024))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("declared %d: no answer before the body: %v", declared, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("declared %d: status %d", declared, resp.StatusCode)
		}
	}
}

// A WebSocket-style protocol switch through the edge's listener (a site
// with reverse_proxy alone): after 101 the bytes are no longer HTTP/1.1 and
// pass unchecked both ways.
func TestEdgeFramingUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "neo-test" {
			fmt.Fprint(w, "ok")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: neo-test\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 64)
		n, _ := brw.Read(buf)
		c.Write(buf[:n])
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e := startEdgeSite(t, "import "+harness.RepoRoot()+"/caddyfiles/snippets/edge-global.caddy", "reverse_proxy "+ln.Addr().String())
	_, port, _ := net.SplitHostPort(e.https)
	c := e.rawTLS(t)
	fmt.Fprintf(c, "GET /orders/ws HTTP/1.1\r\nHost: acme-dev.apps.localhost:%s\r\nConnection: Upgrade\r\nUpgrade: neo-test\r\n\r\n", port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	frame := "\x81\x05bare\nLF\x00 not HTTP\r\n"
	fmt.Fprint(c, frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
		t.Fatalf("after the switch: %q %v", got, err)
	}
}
