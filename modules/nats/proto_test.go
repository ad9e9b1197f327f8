package neonats

import (
	"errors"
	"strings"
	"testing"

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
