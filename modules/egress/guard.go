package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
)

// DefaultInternalRanges are refused whatever the policy: loopback, private,
// carrier-grade NAT, link-local (cloud metadata lives at 169.254.169.254),
// "this network", unique-local and link-local IPv6, and the IPv6 loopback and
// unspecified addresses. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and NAT64
// addresses (64:ff9b::a.b.c.d) are checked as the IPv4 address they carry.
// Multicast, broadcast and unspecified addresses are always refused as well.
var DefaultInternalRanges = []string{
	"127.0.0.0/8",
	"10.0.0.0/8",
	"172.16.0.0/12",
	"192.168.0.0/16",
	"169.254.0.0/16",
	"100.64.0.0/10",
	"0.0.0.0/8",
	"fc00::/7",
	"fe80::/10",
	"::1/128",
	"::/128",
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// denial is a refusal with the HTTP status the caller gets, the verdict
// recorded in logs and metrics, and a reason for the log line.
type denial struct {
	status  int
	verdict string
	reason  string
}

func (e *denial) Error() string { return e.reason }

func forbidden(verdict, format string, args ...any) *denial {
	return &denial{status: http.StatusForbidden, verdict: verdict, reason: fmt.Sprintf(format, args...)}
}

// guard decides whether an address may be dialled.
type guard struct {
	internal []netip.Prefix
	external []netip.Prefix // carved out of internal (tests, lab setups)
}

func parsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want an IP address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// internalAddr reports whether a must not be dialled, and why.
func (g *guard) internalAddr(a netip.Addr) (bool, string) {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, p := range g.external {
		if p.Contains(a) {
			return false, ""
		}
	}
	for _, p := range g.internal {
		if p.Contains(a) {
			return true, "internal address (range " + p.String() + ")"
		}
	}
	if a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true, "internal address (multicast, broadcast or unspecified)"
	}
	return false, ""
}

// control is a net.Dialer Control function: the last check, on the very
// address the socket connects to.
func (g *guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return forbidden(verdictInternal, "unparsable dial address %q", address)
	}
	if bad, why := g.internalAddr(ap.Addr()); bad {
		return forbidden(verdictInternal, "%s is an %s", ap.Addr(), why)
	}
	return nil
}

// resolver looks names up: the static hosts first, then DNS.
type resolver struct {
	static map[string][]netip.Addr
	dns    *net.Resolver
}

func (r *resolver) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if addrs, ok := r.static[host]; ok {
		return addrs, nil
	}
	addrs, err := r.dns.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, &denial{status: http.StatusBadGateway, verdict: verdictUnresolvable, reason: "no such host " + host}
		}
		return nil, err
	}
	return addrs, nil
}
