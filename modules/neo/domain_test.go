package neo

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	whatwg "github.com/nlnwa/whatwg-url/url"
)

func TestCheckCustomDomain(t *testing.T) {
	for host, want := range map[string]string{
		"1.2.3.4":              "is an IP address",
		"127.0.0.1":            "is an IP address",
		"::1":                  "is an IPv6 address",
		"[::1]":                "is an IPv6 address",
		"[2001:db8::1]":        "is an IPv6 address",
		"fe80::1%eth0":         "is an IPv6 address",
		"::ffff:1.2.3.4":       "is an IPv6 address",
		"shop.example.com:443": "contains ':'",
		"[shop.example.com]":   "contains ':' or '['",
		"127.1":                "ends in a number",
		"0x7f.1":               "ends in a number",
		"0x7f000001":           "ends in a number",
		"2130706433":           "ends in a number",
		"0177.0.0.1":           "ends in a number",
		"1.2.3.0x4":            "ends in a number",
		"shop.example.0x":      "ends in a number",
		"shop.example.123":     "ends in a number",
		"shop.example.123.":    "ends in a number",
		"Shop.example.com":     "must be lowercase",
		"localhost":            "not a valid host name",
		"shop..example.com":    "not a valid host name",
		"-shop.example.com":    "not a valid host name",
		"shop.example.com.":    "not a valid host name",
		"shop_1.example.com":   "not a valid host name",
		"co.uk":                "is a public suffix",
		"github.io":            "is a public suffix",
		"":                     "empty host name",
	} {
		err := CheckCustomDomain(host)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrCustomDomain) {
			t.Errorf("%q: want an error containing %q, got %v", host, want, err)
		}
	}
	for _, host := range []string{"shop.example.com", "shop.acme.localhost", "example.co.uk", "x1.example.com", "123.example.com", "0x7f.example.com", "acme.github.io", "xn--bcher-kva.example"} {
		if err := CheckCustomDomain(host); err != nil {
			t.Errorf("%q: %v", host, err)
		}
	}
}

// Custom domains are refused when they are, are under or are parents of the
// platform and runtime domains, or of another tenant's custom domains; the
// tenant's own domains may nest.
func TestCustomDomainNesting(t *testing.T) {
	dom := func(hosts ...string) *TenantConfig {
		tc := &TenantConfig{Domains: map[string]*DomainConfig{}}
		for _, h := range hosts {
			tc.Domains[h] = &DomainConfig{Stage: "prod"}
		}
		return tc
	}
	a := newTestApp(t, demoTenants()) // acme: shop.acme.localhost
	for name, tc := range map[string]struct {
		hosts []string
		want  string
	}{
		"runtime domain":     {[]string{"apps.localhost"}, `"apps.localhost" is the runtime domain`},
		"platform domain":    {[]string{"platform.localhost"}, `"platform.localhost" is the platform domain`},
		"under runtime":      {[]string{"acme.apps.localhost"}, `is under the runtime domain "apps.localhost"`},
		"deep under runtime": {[]string{"x.acme-dev.apps.localhost"}, `is under the runtime domain`},
		"under platform":     {[]string{"acme.platform.localhost"}, `is under the platform domain`},
		"same as other":      {[]string{"shop.acme.localhost"}, `already a domain of tenant "acme"`},
		"under other":        {[]string{"evil.shop.acme.localhost"}, `"evil.shop.acme.localhost" is under "shop.acme.localhost", a domain of tenant "acme"`},
		"parent of other":    {[]string{"acme.localhost"}, `"acme.localhost" is a parent of "shop.acme.localhost", a domain of tenant "acme"`},
		"ip":                 {[]string{"10.0.0.1"}, `tenants.initech.domains.10.0.0.1: "10.0.0.1" is an IP address`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := a.Put("initech", dom(tc.hosts...))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tenants.initech.domains.") {
				t.Fatalf("want an error naming the field and containing %q, got %v", tc.want, err)
			}
		})
	}
	// Parents of the platform and runtime domains, on a registry where they
	// have three labels.
	g, err := newGlobals("az-a", "apps.example.com", "platform.example.com", []string{"prod"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.compileTenant("acme", SourceConfig, dom("example.com")); err == nil || !strings.Contains(err.Error(), `"example.com" is a parent of the runtime domain "apps.example.com"`) {
		t.Fatalf("parent of the runtime domain: %v", err)
	}
	// A tenant's own domains nest; then no other tenant can take a parent.
	if _, err := a.Put("initech", dom("initech.localhost", "crm.initech.localhost", "a.b.initech.localhost")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put("hooli", dom("b.initech.localhost")); err == nil || !strings.Contains(err.Error(), `under "initech.localhost"`) {
		t.Fatalf("under another tenant's parent domain: %v", err)
	}
	if _, err := a.Put("hooli", dom("hooli.localhost")); err != nil {
		t.Fatal(err)
	}
	// initech gives up its parent domain: hooli may now take a name beside
	// initech's, but still not a parent of one of them.
	if _, err := a.Put("initech", dom("crm.initech.localhost", "a.b.initech.localhost")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put("hooli", dom("hooli.localhost", "b.initech.localhost")); err == nil || !strings.Contains(err.Error(), `"b.initech.localhost" is a parent of "a.b.initech.localhost", a domain of tenant "initech"`) {
		t.Fatalf("parent of another tenant's domain: %v", err)
	}
	if _, err := a.Put("hooli", dom("hooli.localhost", "web.initech.localhost")); err != nil {
		t.Fatalf("a sibling of another tenant's domain: %v", err)
	}
	// Once initech is gone, its names are free.
	if err := a.Delete("initech"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put("hooli", dom("hooli.localhost", "initech.localhost")); err != nil {
		t.Fatalf("after the other tenant left: %v", err)
	}
	// The count of names under each parent is the same as a rebuild's.
	snap := a.reg.Snapshot()
	fresh, err := build(a.g, nil, map[string]*TenantConfig{"acme": demoTenants()["acme"], "hooli": dom("hooli.localhost", "initech.localhost")}, func(string, error) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"acme.localhost", "initech.localhost", "hooli.localhost"} {
		x, _ := snap.sub.Get(p)
		y, _ := fresh.sub.Get(p)
		if x != y {
			t.Errorf("names under %s: %d after changes, %d rebuilt", p, x, y)
		}
	}
}

// The admin API refuses IP literals as custom domains with 400 and a
// message naming the field.
func TestAdminRefusesIPDomain(t *testing.T) {
	a := newTestApp(t, demoTenants())
	if st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech"}, []byte(`{"apps": {"crm": {"stages": {"prod": {}}}}}`)); err != nil || st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, err)
	}
	for _, host := range []string{"127.0.0.1", "0x7f.1", "2130706433", "[::1]", "apps.localhost", "evil.shop.acme.localhost"} {
		st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech", "domains", host}, []byte(`{"stage": "prod"}`))
		if st != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), "tenants.initech.domains.") {
			t.Errorf("%s: %d %v", host, st, err)
		}
	}
	st, _, err := a.handleAdmin(http.MethodPut, []string{"tenants", "initech"}, []byte(`{"domains": {"1.2.3.4": {"stage": "prod"}}}`))
	if st != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), `tenants.initech.domains.1.2.3.4: "1.2.3.4" is an IP address`) {
		t.Errorf("whole tenant: %d %v", st, err)
	}
}

// FuzzCheckCustomDomain: an accepted name is a valid lowercase host name
// that a WHATWG URL parser (what browsers implement) reads as the same
// domain, never as an IP address; a refusal always says why.
func FuzzCheckCustomDomain(f *testing.F) {
	for _, s := range []string{"shop.example.com", "1.2.3.4", "0x7f.1", "127.1", "[::1]", "a.b.0X", "0.0.0.0x", "example.1e1", "xn--x.example", "co.uk", "a.b.c.d.e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		err := CheckCustomDomain(host)
		if err != nil {
			if !errors.Is(err, ErrCustomDomain) {
				t.Fatalf("%q: error without the sentinel: %v", host, err)
			}
			return
		}
		if !ValidHostname(host) {
			t.Fatalf("%q accepted but not a valid host name", host)
		}
		u, perr := whatwg.Parse("https://" + host + "/")
		if perr != nil {
			t.Fatalf("%q accepted but a browser would not parse it: %v", host, perr)
		}
		if u.IsIPv4() || u.IsIPv6() {
			t.Fatalf("%q accepted but a browser reads it as the IP address %s", host, u.Hostname())
		}
		if u.Hostname() != host {
			t.Fatalf("%q accepted but a browser reads it as %q", host, u.Hostname())
		}
	})
}
