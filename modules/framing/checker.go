package framing

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Violation is a breach of HTTP/1.1 request framing (RFC 9112) found on a
// connection. It is the error a request body read returns when the
// violation is inside the body.
type Violation struct {
	// Reason says what was wrong, for the log.
	Reason string
	// Host is the Host header of the request, when it was read.
	Host string
	// InBody is true when the violation is in the body's chunked framing
	// (the request head was accepted and its handler may be running).
	InBody bool
}

func (v *Violation) Error() string { return "malformed HTTP/1.1 request framing: " + v.Reason }

type state uint8

const (
	stRequestLine state = iota
	stHeader
	stBody      // Content-Length bytes
	stChunkLine // chunk-size [; ext] CRLF
	stChunkData // chunk bytes
	stChunkCR   // CR after chunk data
	stChunkLF   // LF after chunk data
	stTrailer   // trailer field lines
	stPassthrough
	stFailed
)

// Limits of the checker; longer lines are violations.
const (
	maxHeadLine  = 1 << 20 // net/http refuses heads beyond max_header_size long before
	maxChunkLine = 4096    // net/http's own limit for chunk lines
	maxTrailer   = 64 << 10
	keepLineCap  = 4096 // line buffers beyond this are not kept between lines
)

var h2Preface = []byte("PRI * HTTP/2.0")

// checker follows the requests on one connection, byte by byte, and finds
// where they break the framing rules that the edge enforces (stricter than
// net/http, which it runs in front of, and never looser, so that both always
// agree where a request ends):
//
//   - every line of the request head, chunk lines and trailer lines end with
//     CRLF (no bare LF, no CR elsewhere), no empty line before the request
//     line, no obsolete line folding, no control characters in field values,
//     field names are tokens directly followed by ':';
//   - the request line is method SP target SP HTTP/1.1 (or HTTP/1.0);
//   - Transfer-Encoding only as one field "chunked", never with
//     Content-Length, never in HTTP/1.0;
//   - Content-Length fields all equal, 1 to 19 digits, at most 2^63-1;
//   - chunk sizes 1 to 16 hexadecimal digits (net/http's limit; leading zeros
//     count), an optional extension without control characters, the data
//     followed by CRLF, then trailer fields and an empty line.
//
// An HTTP/2 connection preface switches it off, as does a protocol switch
// (the connection wrapper calls passthrough).
type checker struct {
	st        state
	line      []byte
	remaining uint64 // body or chunk bytes left
	requests  int

	// the request head being read
	host             [64]byte // the Host header, clipped (copied: no allocation)
	hostLen          int
	connect          bool
	http10           bool
	cl               []byte
	clSeen, clDiffer bool
	te               []byte
	teCount          int
	upgrade          bool

	// fed counts the bytes fed before the current call; with track set,
	// ends records where each request ended (for tests).
	fed   int64
	at    int // position in the bytes being fed
	track bool
	ends  []int64

	// upgradeAsked is set (upgradeAsked, connectAsked) when a request that
	// may switch protocols (an Upgrade header, CONNECT) has been read; the
	// wrapper watches the response.
	upgradeAsked int32
}

// feed checks the next bytes of the connection. It returns how many of them
// are fine and, if the rest is not, the violation.
func (c *checker) feed(p []byte) (int, *Violation) {
	i := 0
	defer func() { c.fed += int64(len(p)) }()
	for i < len(p) {
		switch c.st {
		case stPassthrough:
			return len(p), nil
		case stFailed:
			return i, &Violation{Reason: "connection already failed"}
		case stBody, stChunkData:
			n := uint64(len(p) - i)
			if n > c.remaining {
				n = c.remaining
			}
			i += int(n)
			c.remaining -= n
			c.at = i
			if c.remaining == 0 {
				if c.st == stBody {
					c.endRequest()
				} else {
					c.st = stChunkCR
				}
			}
		case stChunkCR:
			if p[i] != '\r' {
				return i, c.fail("chunk data not followed by CRLF", true)
			}
			i++
			c.st = stChunkLF
		case stChunkLF:
			if p[i] != '\n' {
				return i, c.fail("chunk data not followed by CRLF", true)
			}
			i++
			c.st = stChunkLine
		default: // a line
			start := i
			j := bytes.IndexByte(p[i:], '\n')
			end := len(p)
			if j >= 0 {
				end = i + j + 1
			}
			if len(c.line)+end-i > c.lineLimit() {
				return start, c.fail("line too long", c.st != stRequestLine && c.st != stHeader)
			}
			c.line = append(c.line, p[i:end]...)
			i = end
			c.at = i
			if j < 0 {
				continue
			}
			if v := c.endLine(); v != nil {
				return start, v
			}
		}
	}
	return len(p), nil
}

func (c *checker) lineLimit() int {
	switch c.st {
	case stChunkLine:
		return maxChunkLine + 2
	case stTrailer:
		return maxTrailer
	}
	return maxHeadLine
}

func (c *checker) fail(reason string, inBody bool) *Violation {
	c.st = stFailed
	return &Violation{Reason: reason, Host: string(c.host[:c.hostLen]), InBody: inBody}
}

// endLine handles the complete line in c.line (with its LF).
func (c *checker) endLine() *Violation {
	l := c.line
	body := c.st == stChunkLine || c.st == stTrailer
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return c.fail("bare LF line ending", body)
	}
	l = l[:len(l)-2]
	if bytes.IndexByte(l, '\r') >= 0 {
		return c.fail("bare CR in a line", body)
	}
	var v *Violation
	switch c.st {
	case stRequestLine:
		v = c.requestLine(l)
	case stHeader:
		v = c.headerLine(l)
	case stChunkLine:
		v = c.chunkLine(l)
	case stTrailer:
		if len(l) == 0 {
			c.endRequest()
		} else if reason := checkField(l); reason != "" {
			v = c.fail(reason+" (trailer)", true)
		}
	}
	if cap(c.line) > keepLineCap {
		c.line = nil
	} else {
		c.line = c.line[:0]
	}
	return v
}

func (c *checker) requestLine(l []byte) *Violation {
	if c.requests == 0 && bytes.Equal(l, h2Preface) {
		c.st = stPassthrough
		return nil
	}
	if len(l) == 0 {
		return c.fail("empty line before the request line", false)
	}
	sp1 := bytes.IndexByte(l, ' ')
	if sp1 <= 0 {
		return c.fail("malformed request line", false)
	}
	sp2 := bytes.IndexByte(l[sp1+1:], ' ')
	if sp2 <= 0 {
		return c.fail("malformed request line", false)
	}
	sp2 += sp1 + 1
	method, target, version := l[:sp1], l[sp1+1:sp2], l[sp2+1:]
	for _, b := range method {
		if !isTchar(b) {
			return c.fail("malformed request line", false)
		}
	}
	for _, b := range target {
		if b <= ' ' || b == 0x7f {
			return c.fail("malformed request target", false)
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		c.http10 = false
	case "HTTP/1.0":
		c.http10 = true
	default:
		return c.fail(fmt.Sprintf("unsupported HTTP version %q", clip(version)), false)
	}
	c.connect = string(method) == "CONNECT"
	c.st = stHeader
	return nil
}

// checkField checks a field line; it returns why it is malformed, or "".
func checkField(l []byte) string {
	if l[0] == ' ' || l[0] == '\t' {
		return "obsolete line folding"
	}
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return "malformed field line"
	}
	for _, b := range l[:colon] {
		if !isTchar(b) {
			return "malformed field name"
		}
	}
	for _, b := range l[colon+1:] {
		if b < ' ' && b != '\t' || b == 0x7f {
			return "control character in a field value"
		}
	}
	return ""
}

func (c *checker) headerLine(l []byte) *Violation {
	if len(l) == 0 {
		return c.endHead()
	}
	if reason := checkField(l); reason != "" {
		return c.fail(reason, false)
	}
	colon := bytes.IndexByte(l, ':')
	name, value := l[:colon], trimOWS(l[colon+1:])
	switch {
	case asciiEqualFold(name, "content-length"):
		if !c.clSeen {
			c.clSeen, c.cl = true, append(c.cl[:0], value...)
		} else if !bytes.Equal(c.cl, value) {
			c.clDiffer = true
		}
	case asciiEqualFold(name, "transfer-encoding"):
		c.teCount++
		c.te = append(c.te[:0], value...)
	case asciiEqualFold(name, "upgrade"):
		c.upgrade = len(value) > 0
	case asciiEqualFold(name, "host"):
		if c.hostLen == 0 {
			c.hostLen = copy(c.host[:], value)
		}
	}
	return nil
}

// endHead decides the body's framing when the head ends.
func (c *checker) endHead() *Violation {
	c.requests++
	switch {
	case c.connect:
		c.upgradeAsked = connectAsked
	case c.upgrade:
		c.upgradeAsked = upgradeAsked
	}
	switch {
	case c.teCount > 0 && c.http10:
		return c.fail("Transfer-Encoding in an HTTP/1.0 request", false)
	case c.teCount > 1:
		return c.fail("more than one Transfer-Encoding field", false)
	case c.teCount == 1 && !asciiEqualFold(c.te, "chunked"):
		return c.fail(fmt.Sprintf("unsupported Transfer-Encoding %q", clip(c.te)), false)
	case c.teCount == 1 && c.clSeen:
		return c.fail("both Content-Length and Transfer-Encoding", false)
	case c.teCount == 1:
		c.st = stChunkLine
		return nil
	case c.clDiffer:
		return c.fail("conflicting Content-Length fields", false)
	case c.clSeen:
		n, ok := parseDecimal(c.cl)
		if !ok {
			return c.fail(fmt.Sprintf("invalid Content-Length %q", clip(c.cl)), false)
		}
		if n > 0 {
			c.st, c.remaining = stBody, n
			return nil
		}
	}
	c.endRequest()
	return nil
}

func (c *checker) endRequest() {
	if c.track {
		c.ends = append(c.ends, c.fed+int64(c.at))
	}
	c.st = stRequestLine
	c.hostLen, c.connect, c.http10 = 0, false, false
	c.cl, c.clSeen, c.clDiffer = c.cl[:0], false, false
	c.te, c.teCount, c.upgrade = c.te[:0], 0, false
}

func (c *checker) chunkLine(l []byte) *Violation {
	n := 0
	var size uint64
	for n < len(l) && isHex(l[n]) {
		size = size<<4 | uint64(unhex(l[n]))
		n++
	}
	switch {
	case n == 0:
		return c.fail("invalid chunk size", true)
	case n > 16:
		return c.fail("chunk size with more than 16 hexadecimal digits", true)
	case n < len(l) && l[n] != ';':
		return c.fail("invalid chunk size", true)
	}
	for _, b := range l[n:] {
		if b < ' ' && b != '\t' || b == 0x7f {
			return c.fail("control character in a chunk extension", true)
		}
	}
	if size == 0 {
		c.st = stTrailer
		return nil
	}
	c.st, c.remaining = stChunkData, size
	return nil
}

func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return uint64(n), err == nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// clip bounds what goes into a log line.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
