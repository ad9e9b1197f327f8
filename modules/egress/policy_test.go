package egress

import (
	"net/netip"
	"testing"
)

func TestAllowRules(t *testing.T) {
	tg := func(s string) Target {
		t.Helper()
		x, err := ParseTarget(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		pattern string
		target  string
		want    bool
	}{
		{"api.example.com", "api.example.com:443", true},
		{"api.example.com", "api.example.com:80", true},
		{"api.example.com", "api.example.com:8443", false},
		{"api.example.com", "x.api.example.com:443", false},
		{"API.example.com.", "api.example.com:443", true},
		{"*.example.com", "api.example.com:443", true},
		{"*.example.com", "a.b.example.com:443", true},
		{"*.example.com", "example.com:443", false},
		{"*.example.com", "evilexample.com:443", false},
		{"*.example.com:8443", "api.example.com:8443", true},
		{"*.example.com:8443", "api.example.com:443", false},
		{"api.example.com:8000-8099", "api.example.com:8050", true},
		{"api.example.com:8000-8099", "api.example.com:8100", false},
		{"api.example.com:*", "api.example.com:1", true},
		{"*", "anything.test:443", true},
		{"*", "anything.test:22", false},
		{"*:*", "anything.test:22", true},
		{"203.0.113.0/24", "203.0.113.9:443", true},
		{"203.0.113.0/24", "203.0.114.9:443", false},
		{"203.0.113.7", "203.0.113.7:80", true},
		{"203.0.113.7", "x.example.com:80", false},
		{"[2001:db8::/32]:443", "[2001:db8::5]:443", true},
		{"[2001:db8::1]", "[2001:db8::1]:80", true},
		{"api.example.com", "203.0.113.7:443", false},
	} {
		r, err := parseAllow(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		if got := r.matches(tg(tc.target)); got != tc.want {
			t.Errorf("%s matches %s: got %v, want %v", tc.pattern, tc.target, got, tc.want)
		}
	}
	for _, bad := range []string{"", "api.example.com:", "a:0", "a:70000", "a:9-1", "*.", "**", "a*.example.com", "2001:db8::1", "[2001:db8::1", "[1.2.3.4]", "http://x", "a/b", "*.123"} {
		if _, err := parseAllow(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestPolicyAppReplacesTenant(t *testing.T) {
	g := &Gateway{Zone: "az-a", Policies: []Policy{
		{Tenant: "acme", Allow: []string{"api.partner.test"}},
		{Tenant: "acme", App: "ledger", Allow: []string{"bank.test"}},
		{Tenant: "acme", App: "sealed", Allow: []string{}},
	}}
	if err := g.compile(); err != nil {
		t.Fatal(err)
	}
	partner, _ := ParseTarget("api.partner.test:443", 0)
	bank, _ := ParseTarget("bank.test:443", 0)
	p := g.policies["acme"]
	for _, tc := range []struct {
		app  string
		t    Target
		want bool
	}{
		{"orders", partner, true}, {"orders", bank, false},
		{"ledger", partner, false}, {"ledger", bank, true},
		{"sealed", partner, false}, {"", partner, true},
	} {
		if got := p.allowed(tc.app, tc.t); got != tc.want {
			t.Errorf("app %q to %s: got %v", tc.app, tc.t, got)
		}
	}
	if g.policies["globex"].allowed("", partner) {
		t.Error("a tenant without policy must reach nothing")
	}
}

func TestGuard(t *testing.T) {
	g := &Gateway{Zone: "az-a", TreatAsExternal: []string{"127.0.0.10"}}
	if err := g.compile(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr     string
		internal bool
	}{
		{"127.0.0.1", true}, {"127.255.255.254", true}, {"127.0.0.10", false},
		{"10.0.0.1", true}, {"172.16.0.1", true}, {"172.31.255.255", true}, {"172.32.0.1", false},
		{"192.168.1.1", true}, {"169.254.169.254", true}, {"100.64.0.1", true}, {"100.128.0.1", false},
		{"0.0.0.0", true}, {"0.1.2.3", true}, {"255.255.255.255", true}, {"224.0.0.1", true},
		{"::1", true}, {"::", true}, {"fc00::1", true}, {"fd12::1", true}, {"fe80::1", true}, {"fe80::1%lo", true},
		{"::ffff:127.0.0.1", true}, {"::ffff:169.254.169.254", true}, {"::ffff:127.0.0.10", false},
		{"64:ff9b::a9fe:a9fe", true}, {"64:ff9b::808:808", false}, {"ff02::1", true},
		{"8.8.8.8", false}, {"2001:4860:4860::8888", false}, {"203.0.113.7", false},
	} {
		got, _ := g.guard.internalAddr(netip.MustParseAddr(tc.addr))
		if got != tc.internal {
			t.Errorf("%s: internal %v, want %v", tc.addr, got, tc.internal)
		}
		err := g.guard.control("tcp", netip.AddrPortFrom(netip.MustParseAddr(tc.addr).WithZone(""), 443).String(), nil)
		if (err != nil) != tc.internal {
			t.Errorf("%s: control error %v, want internal %v", tc.addr, err, tc.internal)
		}
	}
}

// FuzzParseAllow: no panics; a rule that parses matches only targets on its
// ports.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.example.com:8443", "*", "*:*", "203.0.113.0/24", "[2001:db8::/32]:443", "a:1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseAllow(s)
		if err != nil {
			return
		}
		odd, _ := ParseTarget("x.example.com:7", 0)
		if r.lo == 0 && r.matches(odd) {
			t.Fatalf("%q: default ports matched port 7", s)
		}
	})
}
