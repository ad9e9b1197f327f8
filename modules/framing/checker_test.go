package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// check feeds the stream in pieces of size step (0: at once) and returns
// the violation and where the fine bytes end.
func check(stream string, step int) (*checker, int, *Violation) {
	c := &checker{track: true}
	p := []byte(stream)
	if step <= 0 {
		step = len(p)
	}
	off := 0
	for off < len(p) {
		end := min(off+step, len(p))
		ok, v := c.feed(p[off:end])
		if v != nil {
			return c, off + ok, v
		}
		off = end
	}
	return c, off, nil
}

const (
	get  = "GET /a HTTP/1.1\r\nHost: acme.apps.localhost\r\n\r\n"
	post = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chk  = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n000A\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n"
)

func TestCheckerAccepts(t *testing.T) {
	for name, tc := range map[string]struct {
		stream string
		ends   int
	}{
		"get":           {get, 1},
		"pipelined":     {get + post + chk + get, 4},
		"http10":        {"GET / HTTP/1.0\r\n\r\n", 1},
		"cl zero":       {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 1},
		"cl same twice": {"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length:  2 \r\n\r\nab", 1},
		"te any case":   {"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", 1},
		"leading zeros": {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000002\r\nab\r\n0\r\n\r\n", 1},
		"h2 preface":    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", 0},
		"tab in value":  {"GET / HTTP/1.1\r\nX-A: a\tb\r\n\r\n", 1},
	} {
		for _, step := range []int{0, 1, 7} {
			c, _, v := check(tc.stream, step)
			if v != nil || len(c.ends) != tc.ends {
				t.Errorf("%s (step %d): %v, %d requests, want %d", name, step, v, len(c.ends), tc.ends)
			}
		}
	}
}

func TestCheckerRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		stream, reason string
		inBody         bool
	}{
		"bare LF request line":  {"GET / HTTP/1.1\nHost: x\r\n\r\n", "bare LF", false},
		"bare LF header":        {"GET / HTTP/1.1\r\nHost: x\n\r\n", "bare LF", false},
		"bare LF end of head":   {"GET / HTTP/1.1\r\nHost: x\r\n\n", "bare LF", false},
		"bare CR":               {"GET / HTTP/1.1\r\nHost: x\ry: z\r\n\r\n", "bare CR", false},
		"empty line first":      {"\r\n" + get, "empty line before the request line", false},
		"folding":               {"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "obsolete line folding", false},
		"space before colon":    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "malformed field name", false},
		"no colon":              {"GET / HTTP/1.1\r\nHost\r\n\r\n", "malformed field line", false},
		"ctl in value":          {"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", "control character", false},
		"version":               {"GET / HTTP/1.2\r\n\r\n", "unsupported HTTP version", false},
		"request line":          {"GET  / HTTP/1.1\r\n\r\n", "malformed request line", false},
		"target ctl":            {"GET /\x01 HTTP/1.1\r\n\r\n", "malformed request target", false},
		"cl and te":             {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "both Content-Length and Transfer-Encoding", false},
		"cl differ":             {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting Content-Length", false},
		"cl list":               {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", "invalid Content-Length", false},
		"cl plus":               {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", "invalid Content-Length", false},
		"cl overflow":           {"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", "invalid Content-Length", false},
		"te gzip":               {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding", false},
		"te twice":              {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "more than one Transfer-Encoding", false},
		"te http10":             {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0", false},
		"chunk 17 digits":       {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", "more than 16 hexadecimal digits", true},
		"chunk overflow":        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n", "more than 16", true},
		"chunk invalid hex":     {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n", "invalid chunk size", true},
		"chunk negative":        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size", true},
		"chunk empty size":      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "invalid chunk size", true},
		"chunk space":           {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", "invalid chunk size", true},
		"chunk missing CRLF":    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "not followed by CRLF", true},
		"chunk bare LF":         {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", "bare LF", true},
		"chunk data bare LF":    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", "not followed by CRLF", true},
		"trailer folding":       {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", "obsolete line folding (trailer)", true},
		"second request bad":    {get + "GET / HTTP/1.1\nHost: x\r\n\r\n", "bare LF", false},
		"chunk line too long":   {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("a", 5000) + "\r\n", "line too long", true},
		"chunk ext ctl":         {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\x01\r\n", "control character in a chunk extension", true},
		"h2 preface not first":  {get + "PRI * HTTP/2.0\r\n\r\n", "unsupported HTTP version", false},
		"method not token":      {"G(T / HTTP/1.1\r\n\r\n", "malformed request line", false},
		"missing version":       {"GET /\r\n\r\n", "malformed request line", false},
		"upgrade then bad head": {"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\n\r\n", "bare LF", false},
	} {
		for _, step := range []int{0, 1, 5} {
			_, _, v := check(tc.stream, step)
			if v == nil || !strings.Contains(v.Reason, tc.reason) || v.InBody != tc.inBody {
				t.Errorf("%s (step %d): %+v, want %q (in body %v)", name, step, v, tc.reason, tc.inBody)
			}
		}
	}
}

// goEnds reads stream with net/http's request parser and returns where each
// request it read completely (head and body) ended, up to the first error.
func goEnds(stream []byte) []int64 {
	br := bytes.NewReader(stream)
	r := bufio.NewReader(br)
	var ends []int64
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return ends
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return ends
		}
		ends = append(ends, int64(len(stream)-br.Len()-r.Buffered()))
	}
}

// FuzzChecker: the checker's verdict does not depend on how the bytes are
// split between reads, and it never disagrees with net/http about where a
// request ends: for every request both accept, the boundaries are the same
// (so the edge and net/http never read a different request from the same
// bytes). Where net/http accepts what the checker refuses, the connection is
// closed with 400 instead.
func FuzzChecker(f *testing.F) {
	for _, s := range []string{get, post, chk, get + post + chk, "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\n\n", "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\r\n\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		whole, okWhole, vWhole := check(string(stream), 0)
		split, okSplit, vSplit := check(string(stream), int(step))
		if (vWhole == nil) != (vSplit == nil) || vWhole != nil && (vWhole.Reason != vSplit.Reason || vWhole.InBody != vSplit.InBody) ||
			len(whole.ends) != len(split.ends) {
			t.Fatalf("verdict depends on the split (step %d): %+v %d %v / %+v %d %v", step, vWhole, okWhole, whole.ends, vSplit, okSplit, split.ends)
		}
		if whole.st == stPassthrough {
			return
		}
		ends := goEnds(stream)
		for i := 0; i < len(ends) && i < len(whole.ends); i++ {
			if ends[i] != whole.ends[i] {
				t.Fatalf("request %d ends at %d for net/http, at %d for the checker", i, ends[i], whole.ends[i])
			}
		}
	})
}
