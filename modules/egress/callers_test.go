package egress

import (
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestParseProxyAuthorization(t *testing.T) {
	for _, tc := range []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{basic("orders", "s3cret"), "orders", "s3cret", true},
		{"basic " + base64.StdEncoding.EncodeToString([]byte("a:b:c")), "a", "b:c", true},
		{"BASIC   " + base64.StdEncoding.EncodeToString([]byte("a:")), "a", "", true},
		{basic("", "x"), "", "", false},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")), "", "", false},
		{"Bearer abc", "", "", false},
		{"Basic", "", "", false},
		{"Basic !!!", "", "", false},
		{"Basic " + strings.Repeat("A", 5000), "", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, p, ok := ParseProxyAuthorization(tc.in)
			if ok != tc.ok || u != tc.user || p != tc.pass {
				t.Fatalf("got %q %q %v, want %q %q %v", u, p, ok, tc.user, tc.pass, tc.ok)
			}
		})
	}
}

// FuzzParseProxyAuthorization: no panics; whatever is accepted re-encodes to
// an accepted header with the same username and password.
func FuzzParseProxyAuthorization(f *testing.F) {
	for _, s := range []string{basic("u", "p"), "Basic", "Basic ====", "Digest x", "basic  Og==", basic("a", "b:c")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, p, ok := ParseProxyAuthorization(s)
		if !ok {
			if u != "" || p != "" {
				t.Fatalf("%q: refused but returned %q %q", s, u, p)
			}
			return
		}
		if u == "" || strings.ContainsRune(u, ':') {
			t.Fatalf("%q: bad username %q", s, u)
		}
		u2, p2, ok2 := ParseProxyAuthorization(basic(u, p))
		if !ok2 || u2 != u || p2 != p {
			t.Fatalf("%q: does not round-trip", s)
		}
	})
}

func TestStaticCallers(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("bcrypt-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStaticCallers([]CallerAddress{
		{Address: "10.1.0.0/16", Tenant: "acme", Stage: "prod"},
		{Address: "10.1.2.3", Tenant: "acme", Stage: "prod", App: "orders"},
		{Address: "10.2.0.0/16", Tenant: "globex"},
	}, []Credential{
		{Username: "orders", SecretHash: HashSecret("s3cret"), Tenant: "acme", Stage: "dev", App: "orders"},
		{Username: "billing", SecretHash: string(bc), Tenant: "globex", App: "billing"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, tenant, app string
		ok                bool
	}{
		{"10.1.2.3", "acme", "orders", true},
		{"::ffff:10.1.2.3", "acme", "orders", true},
		{"10.1.9.9", "acme", "", true},
		{"10.2.0.1", "globex", "", true},
		{"10.3.0.1", "", "", false},
	} {
		c, ok := s.CallerByAddress(netip.MustParseAddr(tc.addr))
		if ok != tc.ok || c.Tenant != tc.tenant || c.App != tc.app {
			t.Errorf("%s: got %+v %v", tc.addr, c, ok)
		}
	}
	for _, tc := range []struct {
		user, pass, tenant string
		ok                 bool
	}{
		{"orders", "s3cret", "acme", true},
		{"orders", "wrong", "", false},
		{"billing", "bcrypt-secret", "globex", true},
		{"billing", "bcrypt-secret", "globex", true}, // cached
		{"billing", "nope", "", false},
		{"nobody", "s3cret", "", false},
	} {
		c, ok := s.CallerByCredentials(tc.user, tc.pass)
		if ok != tc.ok || (ok && c.Tenant != tc.tenant) {
			t.Errorf("%s/%s: got %+v %v", tc.user, tc.pass, c, ok)
		}
	}
	for name, tc := range map[string]struct {
		addrs []CallerAddress
		creds []Credential
		want  string
	}{
		"bad address": {addrs: []CallerAddress{{Address: "x", Tenant: "a"}}, want: "callers[0].address"},
		"no tenant":   {addrs: []CallerAddress{{Address: "10.0.0.1"}}, want: "callers[0].tenant"},
		"dup address": {addrs: []CallerAddress{{Address: "10.0.0.1", Tenant: "a"}, {Address: "10.0.0.1/32", Tenant: "b"}}, want: "callers[1].address"},
		"bad hash":    {creds: []Credential{{Username: "u", SecretHash: "plain", Tenant: "a"}}, want: "credentials[0].secret_hash"},
		"short sha":   {creds: []Credential{{Username: "u", SecretHash: "sha256:abcd", Tenant: "a"}}, want: "credentials[0].secret_hash"},
		"dup user":    {creds: []Credential{{Username: "u", SecretHash: HashSecret("a"), Tenant: "a"}, {Username: "u", SecretHash: HashSecret("b"), Tenant: "a"}}, want: "credentials[1].username"},
		"colon user":  {creds: []Credential{{Username: "u:v", SecretHash: HashSecret("a"), Tenant: "a"}}, want: "credentials[0].username"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewStaticCallers(tc.addrs, tc.creds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}
