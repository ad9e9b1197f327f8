package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// Allow patterns (see docs/egress.md, "Allowlist patterns"):
//
//	host            exact DNS name, ports 80 and 443
//	*.example.com   any name under example.com (not example.com itself)
//	*               any host (the SSRF guard still applies)
//	203.0.113.7     an IPv4 literal; [2001:db8::1] an IPv6 literal
//	203.0.113.0/24  IP literals in a range; [2001:db8::/32] likewise
//	PATTERN:443     one port; PATTERN:8000-8099 a range; PATTERN:* any port
type allowRule struct {
	exact  string       // exact name
	suffix string       // ".example.com" for *.example.com
	any    bool         // *
	prefix netip.Prefix // IP literal or range
	lo, hi uint16       // port range; lo == 0 means 80 and 443
}

func parseAllow(s string) (allowRule, error) {
	var r allowRule
	host, ports := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return r, fmt.Errorf("%q: unclosed '['", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return r, fmt.Errorf("%q: junk after ']'", s)
			}
			ports = rest[1:]
		}
		p, err := parsePrefix(host)
		if err != nil || !p.Addr().Is6() {
			return r, fmt.Errorf("%q: want an IPv6 address or range in brackets", s)
		}
		r.prefix = p
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, ports = s[:i], s[i+1:]
		}
		if strings.HasSuffix(host, "*.") {
			return r, fmt.Errorf("%q: want a host name, *.domain, *, an IP or a CIDR", s)
		}
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		switch {
		case host == "*":
			r.any = true
		case strings.HasPrefix(host, "*."):
			if err := checkHostname(host[2:]); err != nil {
				return r, fmt.Errorf("%q: %v", s, err)
			}
			r.suffix = host[1:]
		default:
			if p, err := parsePrefix(host); err == nil {
				if !p.Addr().Is4() {
					return r, fmt.Errorf("%q: IPv6 must be in brackets", s)
				}
				r.prefix = p
			} else if strings.ContainsAny(host, ":/*") {
				return r, fmt.Errorf("%q: want a host name, *.domain, *, an IP or a CIDR", s)
			} else if err := checkHostname(host); err != nil {
				return r, fmt.Errorf("%q: %v", s, err)
			} else {
				r.exact = host
			}
		}
	}
	if strings.HasSuffix(s, ":") {
		return r, fmt.Errorf("%q: empty port", s)
	}
	switch {
	case ports == "":
	case ports == "*":
		r.lo, r.hi = 1, 65535
	default:
		a, b, isRange := strings.Cut(ports, "-")
		lo, err := parsePort(a)
		if err != nil {
			return r, fmt.Errorf("%q: bad port %q", s, a)
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(b); err != nil || hi < lo {
				return r, fmt.Errorf("%q: bad port range %q", s, ports)
			}
		}
		r.lo, r.hi = lo, hi
	}
	return r, nil
}

func (r allowRule) matches(t Target) bool {
	if r.lo == 0 {
		if t.Port != 80 && t.Port != 443 {
			return false
		}
	} else if t.Port < r.lo || t.Port > r.hi {
		return false
	}
	switch {
	case r.any:
		return true
	case r.prefix.IsValid():
		return t.IsIP() && r.prefix.Contains(t.IP.Unmap())
	case r.suffix != "":
		return !t.IsIP() && strings.HasSuffix(t.Host, r.suffix)
	default:
		return !t.IsIP() && t.Host == r.exact
	}
}

// compiledPolicy is the allowlist and limits of one tenant, with per-app
// allowlists that replace the tenant's for that app.
type compiledPolicy struct {
	allow          []allowRule
	apps           map[string][]allowRule
	maxConns       int
	bytesPerSecond int64
}

// allowed reports whether caller's app may reach t. An app with its own
// policy uses only that; others use the tenant's. No policy: nothing allowed.
func (p *compiledPolicy) allowed(app string, t Target) bool {
	if p == nil {
		return false
	}
	rules, ok := p.apps[app]
	if !ok {
		rules = p.allow
	}
	for _, r := range rules {
		if r.matches(t) {
			return true
		}
	}
	return false
}
