package forwarded

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseForwarded(t *testing.T) {
	ok := map[string][]Element{
		`for=192.0.2.60;proto=http;by=203.0.113.43`:       {{For: "192.0.2.60", Proto: "http", By: "203.0.113.43"}},
		`For="[2001:db8:cafe::17]:4711"`:                  {{For: "[2001:db8:cafe::17]:4711"}},
		`for=192.0.2.43, for=198.51.100.17`:               {{For: "192.0.2.43"}, {For: "198.51.100.17"}},
		`for=unknown;host="a.example:8443" , for=_hidden`: {{For: "unknown", Host: "a.example:8443"}, {For: "_hidden"}},
		`for="_a:_p";secret="x\"y";;`:                     {{For: "_a:_p", Ext: [][2]string{{"secret", `x"y`}}}},
	}
	for in, want := range ok {
		got, err := ParseForwarded(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", ",", "for", "for=", `for="192.0.2.1`, "for=192.0.2.1;for=192.0.2.2", "for=[::1]", `for="[::1"`,
		"for=::1", "for=evil.example", "proto=1http", "for=1.2.3.4:99999x", "for=1.2.3.4 proto=http",
		"for=\"a\x01\"", strings.Repeat("for=1.2.3.4,", 40), `for="[fe80::1%25eth0]"`, "host=a b",
	} {
		if els, err := ParseForwarded(in); err == nil {
			t.Errorf("%q: accepted as %+v", in, els)
		}
	}
}

// format writes elements back in RFC 7239 syntax.
func format(els []Element) string {
	var b []byte
	for i, el := range els {
		if i > 0 {
			b = append(b, ", "...)
		}
		first := true
		pair := func(k, v string) {
			if v == "" {
				return
			}
			if !first {
				b = append(b, ';')
			}
			first = false
			b = append(b, k...)
			b = append(b, '=')
			b = appendValue(b, v)
		}
		pair("for", el.For)
		pair("by", el.By)
		pair("host", el.Host)
		pair("proto", el.Proto)
		for _, e := range el.Ext {
			pair(e[0], e[1])
		}
	}
	return string(b)
}

// FuzzParseForwarded: no input panics or is accepted beyond the limits;
// what parses, written back, parses to the same elements; the element the
// edge appends for any peer address, host and scheme always parses, and
// names that address.
func FuzzParseForwarded(f *testing.F) {
	for _, s := range []string{
		`for=192.0.2.60;proto=http;by=203.0.113.43`, `For="[2001:db8:cafe::17]:4711"`, `for=unknown, for=_x;host="a:1"`,
		`for=1.2.3.4;x="\\\""`, ";;,,", `for="[::1]"`,
	} {
		f.Add(s, []byte{192, 0, 2, 1}, "acme-dev.apps.localhost:8443", "https")
	}
	f.Fuzz(func(t *testing.T, v string, ip []byte, host, proto string) {
		els, err := ParseForwarded(v)
		if err == nil {
			if len(els) == 0 || len(els) > MaxForwardedElements || len(v) > MaxForwardedLen {
				t.Fatalf("%q: %d elements accepted", v, len(els))
			}
			again, err := ParseForwarded(format(els))
			if err != nil || !reflect.DeepEqual(again, els) {
				t.Fatalf("%q: written back as %q parses to %+v, %v; first %+v", v, format(els), again, err, els)
			}
		}
		addr, _ := netip.AddrFromSlice(ip)
		if !validScheme(proto) {
			proto = "https"
		}
		el := AppendElement(nil, addr, host, proto)
		got, err := ParseForwarded(string(el))
		if err != nil || len(got) != 1 {
			t.Fatalf("the edge's element %q does not parse: %v", el, err)
		}
		if addr.IsValid() {
			a := addr.Unmap()
			want := a.String()
			if a.Is6() {
				want = "[" + want + "]"
			}
			if got[0].For != want {
				t.Fatalf("element %q names %q, want %q", el, got[0].For, want)
			}
		}
	})
}
