package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Target is a destination a caller asked for: a host name or an IP literal,
// and a port.
type Target struct {
	// Host is the lowercased host name without a trailing dot, or the
	// canonical text of IP when the caller gave an IP literal.
	Host string
	// IP is set when the caller gave an IP literal (zones are refused).
	IP netip.Addr
	// Port is the destination port, 1 to 65535.
	Port uint16
}

// IsIP reports whether the caller gave an IP literal.
func (t Target) IsIP() bool { return t.IP.IsValid() }

// String is host:port, with IPv6 literals in brackets.
func (t Target) String() string {
	if t.IP.Is6() {
		return "[" + t.Host + "]:" + strconv.Itoa(int(t.Port))
	}
	return t.Host + ":" + strconv.Itoa(int(t.Port))
}

var errBadTarget = errors.New("bad destination")

// ParseTarget parses the authority of a CONNECT request or the host of an
// absolute-form request URL ("host", "host:port", "[v6]:port"). When the
// authority has no port, defaultPort is used; a defaultPort of 0 makes the
// port mandatory (CONNECT). It accepts only what a well-behaved client sends:
// DNS names of letters, digits, hyphens and underscores (at most 253
// characters, labels at most 63, last label not all digits), IPv4 dotted
// quads and bracketed IPv6 without zone. Everything else is an error wrapping
// errBadTarget.
func ParseTarget(authority string, defaultPort uint16) (Target, error) {
	var t Target
	if authority == "" {
		return t, fmt.Errorf("%w: empty authority", errBadTarget)
	}
	if len(authority) > 300 {
		return t, fmt.Errorf("%w: authority too long", errBadTarget)
	}
	host, portStr := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return t, fmt.Errorf("%w: unclosed '['", errBadTarget)
		}
		host = authority[1:end]
		rest := authority[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return t, fmt.Errorf("%w: junk after ']'", errBadTarget)
			}
			portStr = rest[1:]
			if portStr == "" {
				return t, fmt.Errorf("%w: empty port", errBadTarget)
			}
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return t, fmt.Errorf("%w: bad IPv6 literal", errBadTarget)
		}
		t.IP = ip
	} else {
		if i := strings.LastIndexByte(authority, ':'); i >= 0 {
			host, portStr = authority[:i], authority[i+1:]
			if portStr == "" {
				return t, fmt.Errorf("%w: empty port", errBadTarget)
			}
		}
		if strings.ContainsRune(host, ':') {
			return t, fmt.Errorf("%w: IPv6 literal must be in brackets", errBadTarget)
		}
	}
	switch {
	case portStr != "":
		p, err := parsePort(portStr)
		if err != nil {
			return t, err
		}
		t.Port = p
	case defaultPort != 0:
		t.Port = defaultPort
	default:
		return t, fmt.Errorf("%w: port required", errBadTarget)
	}
	if t.IP.IsValid() {
		t.Host = t.IP.String()
		return t, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Is4() {
			return t, fmt.Errorf("%w: bad IP literal", errBadTarget)
		}
		t.IP, t.Host = ip, ip.String()
		return t, nil
	}
	if err := checkHostname(host); err != nil {
		return t, err
	}
	t.Host = host
	return t, nil
}

func parsePort(s string) (uint16, error) {
	if len(s) > 5 {
		return 0, fmt.Errorf("%w: bad port", errBadTarget)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad port", errBadTarget)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port out of range", errBadTarget)
	}
	return uint16(n), nil
}

// checkHostname accepts lowercased DNS names.
func checkHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%w: bad host name length", errBadTarget)
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%w: bad host name label", errBadTarget)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%w: host name label starts or ends with '-'", errBadTarget)
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%w: bad character in host name", errBadTarget)
			}
		}
	}
	// A last label of digits only is no DNS name, and names made only of
	// numeric or hex labels are what some resolvers read as addresses
	// ("2130706433", "0x7f.1", "127.1", "0x7f"): refuse both.
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("%w: numeric host name", errBadTarget)
	}
	numeric := true
	for _, l := range labels {
		if !isNumericLabel(l) {
			numeric = false
			break
		}
	}
	if numeric {
		return fmt.Errorf("%w: numeric host name", errBadTarget)
	}
	return nil
}

func isNumericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		return strings.Trim(l[2:], "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}
