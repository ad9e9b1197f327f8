package egress

import (
	"errors"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		def  uint16
		want string // "" means error
	}{
		{"api.example.com:443", 0, "api.example.com:443"},
		{"API.Example.COM.:8443", 0, "api.example.com:8443"},
		{"api.example.com", 80, "api.example.com:80"},
		{"api.example.com", 0, ""},
		{"203.0.113.7:443", 0, "203.0.113.7:443"},
		{"[2001:db8::1]:443", 0, "[2001:db8::1]:443"},
		{"[2001:db8::1]", 80, "[2001:db8::1]:80"},
		{"[::ffff:127.0.0.1]:80", 0, "[::ffff:127.0.0.1]:80"},
		{"2001:db8::1:443", 0, ""},
		{"[fe80::1%eth0]:443", 0, ""},
		{"[1.2.3.4]:443", 0, ""},
		{"[2001:db8::1]x:443", 0, ""},
		{"[2001:db8::1", 0, ""},
		{"host:", 80, ""},
		{"host:0", 0, ""},
		{"host:65536", 0, ""},
		{"host:+80", 0, ""},
		{"host:080", 0, "host:80"},
		{":443", 0, ""},
		{"", 80, ""},
		{"a..b:443", 0, ""},
		{"-a.b:443", 0, ""},
		{"a_b.example:443", 0, "a_b.example:443"},
		{"exa mple.com:443", 0, ""},
		{"user@host:443", 0, ""},
		{"host/path:443", 0, ""},
		{"2130706433:80", 0, ""},
		{"127.1:80", 0, ""},
		{"0x7f.0.0.1:80", 0, ""},
		{"0x7f:80", 0, ""},
		{"1.2.3.4.5:80", 0, ""},
		{"example.123:80", 0, ""},
		{"localhost:80", 0, "localhost:80"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in, tc.def)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("want an error, got %v", got)
				}
				if !errors.Is(err, errBadTarget) {
					t.Fatalf("error %v does not wrap errBadTarget", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got.String() != tc.want {
				t.Fatalf("got %q, want %q", got.String(), tc.want)
			}
		})
	}
}

// FuzzParseTarget: no panics; an accepted target has a port, a host, and
// round-trips through its String form.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"api.example.com:443", "[2001:db8::1]:443", "1.2.3.4:80", "[::ffff:10.0.0.1]:1", "a:b:c", "[", "host:", "0x7f.1:80"} {
		f.Add(s, uint16(0))
		f.Add(s, uint16(80))
	}
	f.Fuzz(func(t *testing.T, s string, def uint16) {
		tg, err := ParseTarget(s, def)
		if err != nil {
			return
		}
		if tg.Port == 0 || tg.Host == "" {
			t.Fatalf("%q: accepted without host or port: %+v", s, tg)
		}
		again, err := ParseTarget(tg.String(), 0)
		if err != nil || again != tg {
			t.Fatalf("%q: %q does not round-trip: %+v %v", s, tg.String(), again, err)
		}
		if tg.IsIP() && tg.IP.Zone() != "" {
			t.Fatalf("%q: zone accepted", s)
		}
	})
}
