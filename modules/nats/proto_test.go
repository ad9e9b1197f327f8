package neonats

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestParseFrame(t *testing.T) {
	ok := nats.Header{hdrKind: {kindHead}, hdrVersion: {"1"}, hdrMethod: {"GET"}, hdrPath: {"/x"}, hdrWindow: {"8"}, hdrEOF: {"1"}, hdrLength: {"0"}, "H-Neo-A": {"1", "2"}}
	f, err := parseFrame(&nats.Msg{Header: ok})
	if err != nil {
		t.Fatal(err)
	}
	rh, err := parseReqHead(f)
	if err != nil || rh.method != "GET" || len(rh.header["Neo-A"]) != 2 {
		t.Fatalf("%+v %v", rh, err)
	}
	for name, mut := range map[string]func(h nats.Header){
		"no kind":       func(h nats.Header) { delete(h, hdrKind) },
		"bad kind":      func(h nats.Header) { h[hdrKind] = []string{"nope"} },
		"bad version":   func(h nats.Header) { h[hdrVersion] = []string{"2"} },
		"bad method":    func(h nats.Header) { h[hdrMethod] = []string{"G T"} },
		"relative path": func(h nats.Header) { h[hdrPath] = []string{"x"} },
		"path with CR":  func(h nats.Header) { h[hdrPath] = []string{"/x\r\nH-Evil: 1"} },
		"bad window":    func(h nats.Header) { h[hdrWindow] = []string{"0"} },
		"huge window":   func(h nats.Header) { h[hdrWindow] = []string{"100000"} },
		"bad eof":       func(h nats.Header) { h[hdrEOF] = []string{"yes"} },
		"bad seq":       func(h nats.Header) { h[hdrSeq] = []string{"-1"} },
		"length lies":   func(h nats.Header) { h[hdrLength] = []string{"5"} },
		"bad field":     func(h nats.Header) { h["H-Bad Name"] = []string{"x"} },
		"bad inbox":     func(h nats.Header) { h[hdrInbox] = []string{"_INBOX.>"} },
	} {
		t.Run(name, func(t *testing.T) {
			h := nats.Header{}
			for k, v := range ok {
				h[k] = append([]string(nil), v...)
			}
			mut(h)
			f, err := parseFrame(&nats.Msg{Header: h})
			if err == nil {
				_, err = parseReqHead(f)
			}
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("want ErrBadFrame, got %v", err)
			}
		})
	}
	nr, err := parseFrame(&nats.Msg{Header: nats.Header{"Status": {"503"}}})
	if err != nil || nr.kind != kindNoResponders {
		t.Fatalf("no responders: %+v %v", nr, err)
	}
}

// FuzzFrame feeds raw NATS header blocks (as the client library decodes them
// off the wire) to the frame parsers: they must not panic, and what they
// accept must be safe to turn into an HTTP request.
func FuzzFrame(f *testing.F) {
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: head\r\nNeo-Nats-Version: 1\r\nNeo-Nats-Method: GET\r\nNeo-Nats-Path: /\r\nNeo-Nats-Window: 8\r\nH-A: b\r\n\r\n", []byte("body"))
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: data\r\nNeo-Nats-Seq: 3\r\nNeo-Nats-Eof: 1\r\nT-X: y\r\n\r\n", []byte{})
	f.Add("NATS/1.0 503\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: resp\r\nNeo-Nats-Status: 204\r\nNeo-Nats-Inbox: _INBOX.a.b\r\n\r\n", []byte{})
	f.Fuzz(func(t *testing.T, hdr string, data []byte) {
		h, err := nats.DecodeHeadersMsg([]byte(hdr))
		if err != nil {
			return
		}
		fr, err := parseFrame(&nats.Msg{Header: h, Data: data})
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error does not wrap ErrBadFrame: %v", err)
			}
			return
		}
		if fr.inbox != "" && !validSubject(fr.inbox) {
			t.Fatalf("accepted inbox %q", fr.inbox)
		}
		if fr.kind == kindHead {
			rh, err := parseReqHead(fr)
			if err != nil {
				return
			}
			if !strings.HasPrefix(rh.path, "/") || strings.ContainsAny(rh.path+rh.query+rh.host, "\r\n\x00 #") {
				t.Fatalf("accepted unsafe request line %q %q %q", rh.path, rh.query, rh.host)
			}
			for k, vv := range rh.header {
				if !validHTTPToken(k) {
					t.Fatalf("accepted field name %q", k)
				}
				for _, v := range vv {
					if strings.ContainsAny(v, "\r\n\x00") {
						t.Fatalf("accepted field value %q", v)
					}
				}
			}
		}
		if _, err := httpFields(h, prefixTrailer); err != nil && !errors.Is(err, ErrBadFrame) {
			t.Fatal(err)
		}
	})
}

// TestFieldsShareValues pins down what framing the HTTP fields costs: the
// NATS header shares the HTTP header's value slices (no copy per field),
// appends to either side copy instead of writing into the other, and
// invalid values are still dropped.
func TestFieldsShareValues(t *testing.T) {
	src := http.Header{
		"Accept":          {"application/json"},
		"User-Agent":      {"bench"},
		"X-Forwarded-For": {"127.0.0.1"},
		"Neo-Tenant":      {"acme"},
		"X-Multi":         {"a", "b"},
		"Connection":      {"close, X-Hop"},
		"X-Hop":           {"1"},
		"X-Bad":           {"ok", "no\r\nH-Evil: 1", "fine"},
	}
	dst := nats.Header{}
	putHTTPFields(dst, src, prefixHeader) // warms the key cache
	if got := dst["H-X-Bad"]; len(got) != 2 || got[0] != "ok" || got[1] != "fine" {
		t.Fatalf("invalid value not dropped: %q", got)
	}
	if _, ok := dst["H-X-Hop"]; ok {
		t.Fatal("a field named by Connection was framed")
	}
	dst["H-X-Multi"] = append(dst["H-X-Multi"], "c")
	if len(src["X-Multi"]) != 2 {
		t.Fatal("append to the frame changed the source")
	}
	delete(src, "X-Bad")
	delete(src, "Connection")
	delete(src, "X-Hop")
	if n := testing.AllocsPerRun(100, func() {
		clear(dst)
		putHTTPFields(dst, src, prefixHeader)
	}); n != 0 {
		t.Errorf("framing %d valid fields allocates %.0f objects, want 0", len(src), n)
	}
	h, err := httpFields(dst, prefixHeader)
	if err != nil || len(h) != len(src) || h.Get("Neo-Tenant") != "acme" {
		t.Fatalf("%v %v", h, err)
	}
	h.Add("Neo-Tenant", "other")
	if len(dst["H-Neo-Tenant"]) != 1 {
		t.Fatal("append to the decoded header changed the frame")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = httpFields(dst, prefixHeader) }); n > 3 {
		t.Errorf("decoding %d fields allocates %.0f objects, want at most 3 (the map)", len(dst), n)
	}
}

// BenchmarkFraming measures framing a typical proxied request head and
// decoding it on the gateway side (NATS's own encoding and decoding aside),
// side by side with the copying framing this package used before (kept
// here as the reference), and prints the ratio.
func BenchmarkFraming(b *testing.B) {
	src := http.Header{
		"Accept": {"application/json"}, "Accept-Encoding": {"gzip"}, "User-Agent": {"Go-http-client/1.1"},
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"acme.apps.example"},
		"Neo-Tenant": {"acme"}, "Neo-App": {"orders"},
	}
	ns := map[string]float64{}
	for _, c := range []struct {
		name  string
		frame func() nats.Header
	}{
		{"copying", func() nats.Header {
			head := nats.Header{hdrKind: []string{kindHead}}
			head[hdrVersion] = []string{protoVersion}
			head[hdrMethod] = []string{http.MethodGet}
			copyHTTPFields(head, src, prefixHeader)
			return head
		}},
		{"shared", func() nats.Header {
			head := newFrame(kindHead, 11+len(src))
			head[hdrVersion] = constValue(protoVersion)
			head[hdrMethod] = constValue(http.MethodGet)
			putHTTPFields(head, src, prefixHeader)
			return head
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				head := c.frame()
				var err error
				if c.name == "copying" {
					_, err = copyFields(head, prefixHeader)
				} else {
					_, err = httpFields(head, prefixHeader)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			ns[c.name] = float64(time.Since(start).Nanoseconds()) / float64(b.N)
		})
	}
	if ns["shared"] > 0 && ns["copying"] > 0 {
		fmt.Printf("RATIO framing: copying %.0f ns, shared %.0f ns, speed-up x%.2f\n", ns["copying"], ns["shared"], ns["copying"]/ns["shared"])
	}
}

// copyHTTPFields and copyFields are the framing before value slices were
// shared: the reference of BenchmarkFraming.
func copyHTTPFields(dst nats.Header, src http.Header, prefix string) {
	for k, vv := range src {
		ck := http.CanonicalHeaderKey(k)
		if isHopByHop(ck) || !validHTTPToken(k) {
			continue
		}
		var keep []string
		for _, v := range vv {
			if validFieldValue(v) {
				keep = append(keep, v)
			}
		}
		if len(keep) > 0 {
			dst[prefix+ck] = append(dst[prefix+ck], keep...)
		}
	}
}

func copyFields(h nats.Header, prefix string) (http.Header, error) {
	out := make(http.Header)
	for k, vv := range h {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		name := k[len(prefix):]
		if !validHTTPToken(name) {
			return nil, ErrBadFrame
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return nil, ErrBadFrame
			}
		}
		ck := http.CanonicalHeaderKey(name)
		out[ck] = append(out[ck], vv...)
	}
	return out, nil
}
