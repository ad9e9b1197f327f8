package natshttp

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/modules/natsconn"
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
		"client port":   func(h nats.Header) { h[hdrClient] = []string{"192.0.2.1:80"} },
		"client zone":   func(h nats.Header) { h[hdrClient] = []string{"fe80::1%eth0"} },
		"client name":   func(h nats.Header) { h[hdrClient] = []string{"localhost"} },
		"bad scheme":    func(h nats.Header) { h[hdrScheme] = []string{"ftp"} },
		"bad bind":      func(h nats.Header) { h[hdrBind] = []string{"yes"} },
		"bad compact":   func(h nats.Header) { h[hdrCompact] = []string{"0"} },
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
	// the client, scheme and binding; trailer names the edge controls are dropped
	h := nats.Header{}
	for k, v := range ok {
		h[k] = v
	}
	h[hdrClient], h[hdrScheme], h[hdrBind] = []string{"2001:db8::7"}, []string{"https"}, []string{"1"}
	h[hdrTrailer] = []string{"X-Sum, Neo-Tenant, Host, X-Forwarded-For, Forwarded, Te, Content-Length"}
	if f, err = parseFrame(&nats.Msg{Header: h}); err == nil {
		rh, err = parseReqHead(f)
	}
	if err != nil || rh.client.String() != "2001:db8::7" || rh.scheme != "https" || !rh.bind || !slices.Equal(rh.trailerNames, []string{"X-Sum"}) {
		t.Fatalf("%+v %v", rh, err)
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
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: head\r\nNeo-Nats-Version: 1\r\nNeo-Nats-Method: GET\r\nNeo-Nats-Path: /\r\nNeo-Nats-Window: 8\r\nNeo-Nats-Upgrade: websocket\r\nNeo-Nats-Length: -1\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: resp\r\nNeo-Nats-Status: 101\r\nNeo-Nats-Upgrade: websocket\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: resp\r\nNeo-Nats-Status: 204\r\nNeo-Nats-Inbox: _INBOX.a.b\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: credit\r\nNeo-Nats-Credit: 8\r\nNeo-Nats-Inbox: _GW.prod.a.b\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: cancel\r\nNeo-Nats-Error: client gone\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: error\r\nNeo-Nats-Error: request not in progress\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: probe\r\nNeo-Nats-Seq: 7\r\n\r\n", []byte{})
	f.Add("NATS/1.0\r\nNeo-Nats-Kind: head\r\nNeo-Nats-Version: 1\r\nNeo-Nats-Method: POST\r\nNeo-Nats-Path: /a\r\nNeo-Nats-Window: 8\r\nNeo-Nats-Bind: 1\r\nNeo-Nats-Client: 2001:db8::1\r\nNeo-Nats-Scheme: https\r\nNeo-Nats-Trailer: X-Sum, Neo-Tenant, Host\r\n\r\n", []byte{})
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
		if fr.inbox != "" && !natsconn.ValidSubject(fr.inbox) {
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
			checkReqHead(t, rh)
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

// checkReqHead checks what parseReqHead accepted beyond the request line:
// a client address without a zone, a known scheme, no trailer the edge
// controls.
func checkReqHead(t *testing.T, rh *reqHead) {
	t.Helper()
	if rh.client.IsValid() && rh.client.Zone() != "" {
		t.Fatalf("accepted client %v", rh.client)
	}
	if rh.scheme != "" && rh.scheme != "http" && rh.scheme != "https" {
		t.Fatalf("accepted scheme %q", rh.scheme)
	}
	for _, n := range rh.trailerNames {
		if forbiddenTrailer(n) || !validHTTPToken(n) {
			t.Fatalf("accepted trailer name %q", n)
		}
	}
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

// v2Head encodes a version 2 head frame as the transport does.
func v2Head(method, path, query, host string, hdr http.Header, body []byte) []byte {
	b := appendV2Start(nil, v2KindHead)
	b = appendV2Ctl(b, 'm', method)
	b = appendV2Ctl(b, 'p', path)
	b = appendV2Ctl(b, 'q', query)
	b = appendV2Ctl(b, 'h', host)
	b = appendV2Ctl(b, 'w', "8")
	b = appendV2Ctl(b, 't', "5000")
	b = appendV2Fields(b, v2TagHTTP, hdr)
	b = appendV2Ctl(b, 'l', fmt.Sprint(len(body)))
	b = appendV2Ctl(b, 'e', "1")
	return append(append(b, v2End), body...)
}

func TestParseFrameV2(t *testing.T) {
	src := http.Header{
		"Neo-A":      {"1", "2"},
		"User-Agent": {"x"},
		"Connection": {"close, X-Hop"},
		"X-Hop":      {"gone"},
		"X-Bad":      {"ok", "no\r\nH-Evil: 1"},
		"Te":         {"trailers"},
	}
	d := v2Head("GET", "/a%2Fb", "q=1", "acme.example", src, []byte("body"))
	m := &nats.Msg{Data: d}
	f, err := parseFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	rh, err := parseReqHead(f)
	if err != nil {
		t.Fatal(err)
	}
	if !f.v2 || !f.eof || string(f.data) != "body" || rh.method != "GET" || rh.path != "/a%2Fb" || rh.query != "q=1" ||
		rh.host != "acme.example" || rh.length != 4 || rh.window != 8 || rh.headTimeout != 5*time.Second {
		t.Fatalf("%+v %+v", f, rh)
	}
	want := http.Header{"Neo-A": {"1", "2"}, "User-Agent": {"x"}, "X-Bad": {"ok"}}
	if fmt.Sprint(rh.header) != fmt.Sprint(want) {
		t.Fatalf("header %v, want %v", rh.header, want)
	}
	rh.header.Add("Neo-A", "3")
	rh.header.Add("User-Agent", "y")
	if fmt.Sprint(f.hdr["Neo-A"]) != "[1 2 3]" || len(f.hdr["User-Agent"]) != 2 {
		t.Fatal("appends do not land in the decoded header") // same map: sanity
	}

	// a response with trailers
	r := appendV2Start(nil, v2KindResp)
	r = appendV2Ctl(r, 's', "201")
	r = appendV2Ctl(r, 'i', "_GW.x.y")
	r = appendV2Ctl(r, 'r', "X-Sum")
	r = appendV2Fields(r, v2TagHTTP, http.Header{"Content-Type": {"text/plain"}})
	r = appendV2Ctl(r, 'e', "1")
	r = appendV2Fields(r, v2TagTrail, http.Header{"X-Sum": {"abc"}})
	r = append(append(r, v2End), "hello"...)
	f, err = parseFrame(&nats.Msg{Data: r})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := f.fields(prefixTrailer)
	hd, _ := f.fields(prefixHeader)
	if f.kind != kindResp || f.status != 201 || f.inbox != "_GW.x.y" || !f.eof || f.get(hdrTrailer) != "X-Sum" ||
		tr.Get("X-Sum") != "abc" || hd.Get("Content-Type") != "text/plain" || string(f.data) != "hello" {
		t.Fatalf("%+v", f)
	}

	// what must be refused: each differs from a valid head in one fault
	okHead := func(extra ...byte) []byte {
		b := appendV2Start(nil, v2KindHead)
		b = appendV2Ctl(b, 'm', "GET")
		b = appendV2Ctl(b, 'p', "/")
		b = appendV2Ctl(b, 'w', "8")
		b = appendV2Ctl(b, 'l', "0")
		b = appendV2Ctl(b, 'e', "1")
		return append(append(b, extra...), v2End)
	}
	if f, err := parseFrame(&nats.Msg{Data: okHead('H', 1, 'A', 1, 1, 'x')}); err != nil {
		t.Fatal(err)
	} else if _, err := parseReqHead(f); err != nil {
		t.Fatal(err)
	}
	noEnd := func(extra ...byte) []byte { b := okHead(); return append(b[:len(b)-1], extra...) }
	okResp := func(status string, extra ...byte) []byte {
		return append(append(appendV2Ctl(appendV2Start(nil, v2KindResp), 's', status), extra...), v2End)
	}
	if _, err := parseFrame(&nats.Msg{Data: okResp("200")}); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string][]byte{
		"magic only":     v2Magic,
		"bad kind":       append(append([]byte{}, v2Magic...), 'x', v2End),
		"no end":         noEnd(),
		"cut length":     noEnd('q', 0x85),
		"cut value":      noEnd('q', 10, 'x'),
		"overlong uvar":  noEnd('q', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"unknown tag":    okHead('z', 1, '1'),
		"repeated field": okHead('m', 3, 'P', 'U', 'T'),
		"zero count":     okHead('H', 1, 'A', 0),
		"count too big":  okHead('H', 1, 'A', 100, 1, 'x'),
		"bad name":       okHead('H', 3, 'A', ' ', 'B', 1, 1, 'x'),
		"CR in value":    okHead('H', 1, 'A', 1, 3, 'x', '\r', 'y'),
		"NUL in trailer": okHead('T', 1, 'A', 1, 1, 0),
		"bad eof":        append(okHead()[:len(okHead())-4], 3, 'y', 'e', 's', v2End),
		"bad inbox":      okResp("200", 'i', 8, '_', 'I', 'N', 'B', 'O', 'X', '.', '>'),
		"bad status":     okResp("99"),
		"CR in path":     v2Head("GET", "/x\r\nH-Evil: 1", "", "h", nil, nil),
		"relative path":  v2Head("GET", "x", "", "h", nil, nil),
		"bad method":     v2Head("G T", "/", "", "h", nil, nil),
		"length lies":    append(v2Head("GET", "/", "", "h", nil, []byte("ab")), 'c'),
	} {
		t.Run(name, func(t *testing.T) {
			f, err := parseFrame(&nats.Msg{Data: d})
			if err == nil && f.kind == kindHead {
				_, err = parseReqHead(f)
			}
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("want ErrBadFrame, got %v", err)
			}
		})
	}
	// too many fields
	many := appendV2Start(nil, v2KindHead)
	for i := 0; i <= maxV2Fields; i++ {
		many = append(appendV2String(append(many, 'H'), "A"), 1, 0)
	}
	if _, err := parseFrame(&nats.Msg{Data: append(many, v2End)}); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("%d fields: %v", maxV2Fields+1, err)
	}
	// a message with headers is version 1 whatever its payload
	if _, err := parseFrame(&nats.Msg{Header: nats.Header{"X": {"1"}}, Data: d}); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("headers and a version 2 payload: %v", err)
	}
}

// FuzzFrameV2 feeds arbitrary version 2 frames to the parsers (no panic;
// what they accept is safe to turn into an HTTP request) and checks that
// arbitrary HTTP fields survive encoding and decoding, less what framing
// drops.
func FuzzFrameV2(f *testing.F) {
	f.Add(v2Head("GET", "/", "", "h", http.Header{"A": {"b"}}, []byte("x"))[len(v2Magic):], "X-Name", "value", "other")
	f.Add([]byte{'r', 's', 3, '2', '0', '0', 'e', 1, '1', 'T', 1, 'A', 1, 1, 'b', 0}, "", "", "")
	f.Add([]byte{'r', 's', 3, '1', '0', '1', 'g', 9, 'w', 'e', 'b', 's', 'o', 'c', 'k', 'e', 't', 0}, "", "", "")
	f.Add([]byte{'h', 'm', 3, 'G', 'E', 'T', 'p', 1, '/', 'w', 1, '8', 'l', 2, '-', '1', 'g', 9, 'w', 'e', 'b', 's', 'o', 'c', 'k', 'e', 't', 0}, "", "", "")
	f.Add([]byte{'h', 'H', 1, 'A', 2, 1, 'a', 0, 0}, "Content-Type", "a\x00b", "\r")
	f.Add([]byte{'h', 'm', 3, 'G', 'E', 'T', 'p', 1, '/', 'w', 1, '8', 'b', 1, '1', 'u', 5, 'h', 't', 't', 'p', 's', 'c', 3, ':', ':', '1', 'r', 9, 'A', ',', 'N', 'e', 'o', '-', 'X', ',', 'B', 0}, "Host", "x", "y")
	f.Add([]byte{'h', 'm', 3, 'G', 'E', 'T', 'p', 1, '/', 'w', 1, '8', 'c', 14, 'f', 'e', '8', '0', ':', ':', '1', '%', 'e', 't', 'h', '0', '0', '0', 0}, "", "", "")
	// compact data and credit frames (version 3)
	f.Add([]byte{'d', 1, 0, 'x'}, "", "", "")
	f.Add([]byte{'d', 0x80, 0x01, 1}, "", "", "")
	f.Add([]byte{'d', 0, 0}, "", "", "")
	f.Add([]byte{'d', 1, 2}, "", "", "")
	f.Add([]byte{'d', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, "", "", "")
	f.Add([]byte{'c', 16}, "", "", "")
	f.Add([]byte{'c', 0x81, 0x08}, "", "", "")
	f.Add([]byte{'c', 4, 0}, "", "", "")
	f.Fuzz(func(t *testing.T, rest []byte, name, v1, v2 string) {
		d := append(append([]byte{}, v2Magic...), rest...)
		fr, err := parseFrame(&nats.Msg{Data: d})
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error does not wrap ErrBadFrame: %v", err)
			}
		} else {
			switch fr.kind {
			case kindData:
				// compact: decoded in place by the body reader as by parseFrame
				seq, eof, body, err := parseCompactData(d)
				if err != nil || seq == 0 || seq != fr.seq || eof != fr.eof || !bytes.Equal(body, fr.data) || !isCompactData(&nats.Msg{Data: d}) {
					t.Fatalf("compact data frame: %d %v %q, parseFrame %+v (%v)", seq, eof, body, fr, err)
				}
				again := append(appendCompactData(nil, seq, eof), body...)
				if g, e, b, err := parseCompactData(again); err != nil || g != seq || e != eof || !bytes.Equal(b, body) {
					t.Fatalf("compact data frame does not round-trip: %d %v %q %v", g, e, b, err)
				}
			case kindCredit:
				if fr.credit < 1 || fr.credit > maxWindow {
					t.Fatalf("compact credit %d accepted", fr.credit)
				}
				if c, err := parseCompactCredit(appendCompactCredit(nil, fr.credit)); err != nil || c != fr.credit {
					t.Fatalf("compact credit does not round-trip: %d %v", c, err)
				}
			}
			if fr.inbox != "" && !natsconn.ValidSubject(fr.inbox) {
				t.Fatalf("accepted inbox %q", fr.inbox)
			}
			for _, h := range []http.Header{fr.hdr, fr.tr} {
				for k, vv := range h {
					if !validHTTPToken(k) || len(vv) == 0 {
						t.Fatalf("accepted field %q %q", k, vv)
					}
					for _, v := range vv {
						if strings.ContainsAny(v, "\r\n\x00") {
							t.Fatalf("accepted field value %q", v)
						}
					}
				}
			}
			if fr.kind == kindHead {
				if rh, err := parseReqHead(fr); err == nil {
					if !strings.HasPrefix(rh.path, "/") || strings.ContainsAny(rh.path+rh.query+rh.host, "\r\n\x00 #") {
						t.Fatalf("accepted unsafe request line %q %q %q", rh.path, rh.query, rh.host)
					}
					checkReqHead(t, rh)
				}
			}
		}
		// round trip
		src := http.Header{name: {v1, v2}, "Accept": {v2}}
		fr, err = parseFrame(&nats.Msg{Data: v2Head("GET", "/", "", "h", src, nil)})
		if err != nil {
			t.Fatalf("own frame refused: %v", err)
		}
		want := http.Header{}
		conn := connectionNames(src)
		for k, vv := range src {
			if ck, keep := framedValues(k, vv, conn); len(keep) > 0 {
				want[ck] = append(want[ck], keep...)
			}
		}
		got, _ := fr.fields(prefixHeader)
		if len(got) != len(want) {
			t.Fatalf("fields %q, want %q", got, want)
		}
		for k, vv := range want {
			// names that differ in case only merge in map order: compare
			// the values as sets
			g := append([]string(nil), got[k]...)
			slices.Sort(g)
			slices.Sort(vv)
			if !slices.Equal(g, vv) {
				t.Fatalf("field %q: %q, want %q", k, got[k], vv)
			}
		}
	})
}

// BenchmarkFramingVersions measures a typical proxied request head from
// the edge's fields to the gateway's parsed request, wire encoding and
// decoding included (version 1's NATS header block written and parsed as
// the client library does), in framing versions 1 and 2 side by side, and
// prints the ratio.
func BenchmarkFramingVersions(b *testing.B) {
	src := http.Header{
		"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "User-Agent": {"Go-http-client/1.1"},
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"acme.apps.example"},
		"Via": {"1.1 Caddy"},
	}
	ns := map[string]float64{}
	for _, v := range []string{"v1", "v2"} {
		b.Run(v, func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			start := time.Now()
			for i := 0; i < b.N; i++ {
				m := &nats.Msg{}
				if v == "v1" {
					head := newFrame(kindHead, 11+len(src))
					head[hdrVersion] = constValue(protoVersion)
					head[hdrMethod] = constValue(http.MethodGet)
					head[hdrPath] = []string{"/orders/items"}
					head[hdrQuery] = []string{"id=42"}
					head[hdrHost] = []string{"acme.apps.example"}
					head[hdrWindow] = constValue("8")
					head[hdrTimeout] = []string{"60000"}
					head[hdrLength] = constValue("0")
					head[hdrEOF] = constValue("1")
					putHTTPFields(head, src, prefixHeader)
					// the client library's encoding and decoding
					buf.Reset()
					buf.WriteString("NATS/1.0\r\n")
					_ = http.Header(head).Write(&buf)
					buf.WriteString("\r\n")
					h, err := nats.DecodeHeadersMsg(buf.Bytes())
					if err != nil {
						b.Fatal(err)
					}
					m.Header = h
				} else {
					m.Data = v2Head(http.MethodGet, "/orders/items", "id=42", "acme.apps.example", src, nil)
				}
				f, err := parseFrame(m)
				if err == nil {
					_, err = parseReqHead(f)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			ns[v] = float64(time.Since(start).Nanoseconds()) / float64(b.N)
		})
	}
	if ns["v1"] > 0 && ns["v2"] > 0 {
		fmt.Printf("RATIO framing versions: v1 %.0f ns, v2 %.0f ns, speed-up x%.2f\n", ns["v1"], ns["v2"], ns["v1"]/ns["v2"])
	}
}

// TestUpgradeFrames: a head may ask for a WebSocket only on a GET with a
// stream; a resp frame may be a 101 only when it names the switch.
func TestUpgradeFrames(t *testing.T) {
	head := func(method, upgrade, eof string) error {
		h := nats.Header{hdrKind: {kindHead}, hdrVersion: {protoVersion}, hdrMethod: {method}, hdrPath: {"/"}, hdrWindow: {"8"}, hdrUpgrade: {upgrade}}
		if eof != "" {
			h[hdrEOF] = []string{eof}
		}
		f, err := parseFrame(&nats.Msg{Header: h})
		if err == nil {
			_, err = parseReqHead(f)
		}
		return err
	}
	if err := head("GET", "websocket", ""); err != nil {
		t.Errorf("websocket GET: %v", err)
	}
	for _, c := range [][3]string{{"POST", "websocket", ""}, {"GET", "h2c", ""}, {"GET", "websocket", "1"}} {
		if err := head(c[0], c[1], c[2]); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%v: %v, want a bad frame", c, err)
		}
	}
	if _, err := parseFrame(&nats.Msg{Header: nats.Header{hdrKind: {kindResp}, hdrStatus: {"101"}}}); !errors.Is(err, ErrBadFrame) {
		t.Errorf("101 without an upgrade: %v, want a bad frame", err)
	}
	if _, err := parseFrame(&nats.Msg{Header: nats.Header{hdrKind: {kindResp}, hdrStatus: {"101"}, hdrUpgrade: {"websocket"}}}); err != nil {
		t.Errorf("101 websocket: %v", err)
	}
}
