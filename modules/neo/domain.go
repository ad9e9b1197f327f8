package neo

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// ErrCustomDomain is wrapped by every refusal of a custom domain.
var ErrCustomDomain = errors.New("not allowed as a custom domain")

// CheckCustomDomain reports why host cannot be any tenant's custom domain,
// whatever the registry holds: it must be a lowercase DNS name of at least two
// labels that no browser reads as an IP address, and not a public suffix.
// Refused, with the reason in the error (which wraps ErrCustomDomain):
//   - IP literals: IPv4 (1.2.3.4), IPv6 (::1, bracketed [::1], with a zone);
//   - names whose last label is a number, which browsers parse as an IPv4
//     address (the WHATWG URL standard's "ends in a number" rule): 127.1,
//     0x7f.1, 0177.0.0.1, 1.2.3.0x4;
//   - names that are not lowercase DNS names (ValidHostname), or whose
//     "xn--" labels are not valid punycode;
//   - public suffixes (co.uk, github.io: the Public Suffix List, ICANN and
//     private sections), which no tenant owns.
//
// The checks that depend on the registry (the platform and runtime domains,
// other tenants' domains) are made when a tenant is compiled and published.
func CheckCustomDomain(host string) error {
	switch {
	case host == "":
		return fmt.Errorf("empty host name: %w", ErrCustomDomain)
	case strings.HasPrefix(host, "[") || strings.Contains(host, ":"):
		inner := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if _, err := netip.ParseAddr(inner); err == nil {
			return fmt.Errorf("%q is an IPv6 address: %w", host, ErrCustomDomain)
		}
		return fmt.Errorf("%q contains ':' or '[' (a port or an IPv6 literal); want a bare host name: %w", host, ErrCustomDomain)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("%q is an IP address: %w", host, ErrCustomDomain)
	}
	if EndsInNumber(host) {
		return fmt.Errorf("%q ends in a number, which browsers read as an IPv4 address (decimal, octal or hex forms such as 127.1 or 0x7f.1): %w", host, ErrCustomDomain)
	}
	if host != strings.ToLower(host) {
		return fmt.Errorf("%q must be lowercase: %w", host, ErrCustomDomain)
	}
	if !ValidHostname(host) {
		return fmt.Errorf("%q is not a valid host name (dot-separated labels of lowercase letters, digits and hyphens, at least two labels, at most 253 characters): %w", host, ErrCustomDomain)
	}
	if strings.Contains(host, "xn--") {
		if u, err := idna.Lookup.ToUnicode(host); err != nil || u == "" {
			return fmt.Errorf("%q has a label that is not valid punycode (IDNA): %w", host, ErrCustomDomain)
		}
	}
	if ps, _ := publicsuffix.PublicSuffix(host); ps == host {
		return fmt.Errorf("%q is a public suffix (Public Suffix List), which no tenant owns: %w", host, ErrCustomDomain)
	}
	return nil
}

// EndsInNumber reports whether a browser parses host as an IPv4 address: the
// WHATWG URL standard's "ends in a number" check. The last label (the one
// before a single trailing dot, if any) is a number when it consists of ASCII
// digits, or of "0x" or "0X" followed by hexadecimal digits (possibly none).
// Such a host is an IPv4 address to a browser (0x7f.1 is 127.0.0.1), or no
// valid host at all.
func EndsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" {
		if len(labels) == 1 {
			return false
		}
		last = labels[len(labels)-2]
	}
	if last == "" {
		return false
	}
	digits := true
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			digits = false
			break
		}
	}
	if digits {
		return true
	}
	if len(last) < 2 || last[0] != '0' || (last[1] != 'x' && last[1] != 'X') {
		return false
	}
	for i := 2; i < len(last); i++ {
		c := last[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// domainAncestors calls f with each proper parent of host that has at least
// two labels, nearest first: a.b.example.com gives b.example.com, example.com.
func domainAncestors(host string, f func(parent string) bool) {
	for {
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return
		}
		host = host[i+1:]
		if !strings.Contains(host, ".") || !f(host) {
			return
		}
	}
}

// isUnder reports whether host is a name under parent (not parent itself).
func isUnder(host, parent string) bool {
	return len(host) > len(parent)+1 && strings.HasSuffix(host, parent) && host[len(host)-len(parent)-1] == '.'
}

// checkDomainAgainstGlobals refuses a custom domain that is the runtime or
// platform domain, a name under one (tenants' built-in hosts live there), or
// a parent of one (cookies set for it would reach every tenant's built-in
// hosts).
func (g *globals) checkDomainAgainstGlobals(host string) error {
	for _, d := range []struct{ name, domain string }{{"runtime", g.runtimeDomain}, {"platform", g.platformDomain}} {
		switch {
		case host == d.domain:
			return fmt.Errorf("%q is the %s domain: %w", host, d.name, ErrCustomDomain)
		case isUnder(host, d.domain):
			return fmt.Errorf("%q is under the %s domain %q, where tenants' built-in hosts live: %w", host, d.name, d.domain, ErrCustomDomain)
		case isUnder(d.domain, host):
			return fmt.Errorf("%q is a parent of the %s domain %q (its cookies would reach every tenant's built-in hosts): %w", host, d.name, d.domain, ErrCustomDomain)
		}
	}
	return nil
}
