package ratelimit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Placeholders this handler publishes before its zones run, so keys and
// matchers of its zones (and every handler after it: the WAF, neo_route,
// logs) can use them.
const (
	// PlaceholderHost is the canonical host of the request: the host the
	// tenant router resolves (lower case, without port and trailing dot),
	// which names one tenant and stage, one tenant's Platform host or one
	// custom domain; for a host no tenant owns, the same normalisation of
	// it; empty for a Host that is no DNS name.
	PlaceholderHost = "neo.rate_limit.host"
	// PlaceholderTenant is the tenant the request's host belongs to, or empty.
	PlaceholderTenant = "neo.rate_limit.tenant"
	// PlaceholderZone is set when a request is limited: the zone that limited it.
	PlaceholderZone = "neo.rate_limit.zone"
)

// partKind tells how a part of a key template is evaluated.
type partKind uint8

const (
	partLiteral    partKind = iota
	partRemoteHost          // {http.request.remote.host}: the client address, as a prefix
	partClientIP            // {http.vars.client_ip}: the client address behind trusted proxies, as a prefix
	partHost                // {neo.rate_limit.host}
	partTenant              // {neo.rate_limit.tenant}
	partOther               // any other placeholder, through the replacer
)

type keyPart struct {
	kind partKind
	text string // the literal, or the placeholder name for partOther
}

// keyTemplate is a zone's key, split once at provision time into literals
// and placeholders, so that a request's key is built without the replacer's
// string building for the placeholders the limiter knows.
type keyTemplate struct {
	parts []keyPart
	// v4, v6: the prefix lengths client addresses are cut to.
	v4, v6 int
}

// maxUnclosed mirrors Caddy's replacer, which refuses input with more than
// 100 unclosed placeholders.
const maxUnclosed = 100

// parseKey splits a key template exactly as Caddy's replacer scans it: `{`
// opens a placeholder closed by the next `}` not escaped by a backslash;
// `\{` and `\}` are literal braces; an open brace without a closing one is
// literal text.
func parseKey(input string, v4, v6 int) (keyTemplate, error) {
	kt := keyTemplate{v4: v4, v6: v6}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			kt.parts = append(kt.parts, keyPart{kind: partLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	if !strings.ContainsAny(input, "{}") {
		if input != "" {
			kt.parts = append(kt.parts, keyPart{kind: partLiteral, text: input})
		}
		return kt, nil
	}
	last, unclosed := 0, 0
scan:
	for i := 0; i < len(input); i++ {
		if i > 0 && input[i-1] == '\\' && (input[i] == '}' || input[i] == '{') {
			lit.WriteString(input[last : i-1])
			last = i
			continue
		}
		if input[i] != '{' {
			continue
		}
		if unclosed > maxUnclosed {
			return keyTemplate{}, fmt.Errorf("more than %d unclosed placeholders", maxUnclosed)
		}
		end := strings.IndexByte(input[i:], '}') + i
		if end < i {
			unclosed++
			continue
		}
		for end > 0 && end < len(input)-1 && input[end-1] == '\\' {
			next := strings.IndexByte(input[end+1:], '}')
			if next < 0 {
				unclosed++
				continue scan
			}
			end += next + 1
		}
		lit.WriteString(input[last:i])
		flush()
		name := input[i+1 : end]
		kt.parts = append(kt.parts, placeholderPart(name))
		i = end
		last = i + 1
	}
	lit.WriteString(input[last:])
	flush()
	return kt, nil
}

func placeholderPart(name string) keyPart {
	switch name {
	case "http.request.remote.host":
		return keyPart{kind: partRemoteHost}
	case "http.vars.client_ip":
		return keyPart{kind: partClientIP}
	case PlaceholderHost:
		return keyPart{kind: partHost}
	case PlaceholderTenant:
		return keyPart{kind: partTenant}
	}
	return keyPart{kind: partOther, text: name}
}

// reqInfo is what a request's keys are built from, resolved once per request.
type reqInfo struct {
	r      *http.Request
	repl   *caddy.Replacer
	host   string // canonical host
	tenant string
}

// appendKey appends the request's key to b: literals as they are, client
// addresses as their prefix (IPv4 ipv4_prefix bits, IPv6 ipv6_prefix bits,
// written as "addr" for a whole address and "addr/bits" otherwise), other
// placeholders as the replacer's value (empty when unknown). For every key
// without client addresses, or with IPv4 clients at /32, the bytes equal
// what the replacer's ReplaceAll(key, "") gives.
func (kt *keyTemplate) appendKey(b []byte, ri *reqInfo) []byte {
	for _, p := range kt.parts {
		switch p.kind {
		case partLiteral:
			b = append(b, p.text...)
		case partRemoteHost:
			r := ri.r
			if r.TLS != nil && !r.TLS.HandshakeComplete {
				// 0-RTT early data: the address may be spoofed (Caddy's
				// replacer gives nothing either).
				continue
			}
			b = appendClient(b, remoteHost(r.RemoteAddr), kt.v4, kt.v6)
		case partClientIP:
			ip, _ := caddyhttp.GetVar(ri.r.Context(), caddyhttp.ClientIPVarKey).(string)
			b = appendClient(b, ip, kt.v4, kt.v6)
		case partHost:
			b = append(b, ri.host...)
		case partTenant:
			b = append(b, ri.tenant...)
		case partOther:
			if v, ok := ri.repl.Get(p.text); ok {
				switch v := v.(type) {
				case string:
					b = append(b, v...)
				case []byte:
					b = append(b, v...)
				default:
					b = append(b, caddy.ToString(v)...)
				}
			}
		}
	}
	return b
}

// remoteHost is the host part of a RemoteAddr ("host:port"), or all of it
// when it has no port (a Unix socket path), as Caddy's replacer gives it.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// appendClient appends the client address ip cut to its prefix. Input that
// is not an IP address (a Unix socket, garbage from a misbehaving module) is
// appended as it is.
func appendClient(b []byte, ip string, v4, v6 int) []byte {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return append(b, ip...)
	}
	if a.Is4() && v4 >= 32 {
		// ParseAddr takes IPv4 only in its canonical form: no formatting.
		return append(b, ip...)
	}
	a = a.WithZone("").Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	if bits >= a.BitLen() {
		return a.AppendTo(b)
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return append(b, ip...)
	}
	b = p.Addr().AppendTo(b)
	b = append(b, '/')
	return appendInt(b, bits)
}

func appendInt(b []byte, n int) []byte {
	if n >= 100 {
		b = append(b, byte('0'+n/100))
		n %= 100
		return append(b, byte('0'+n/10), byte('0'+n%10))
	}
	if n >= 10 {
		b = append(b, byte('0'+n/10))
	}
	return append(b, byte('0'+n%10))
}

// ClientKey returns the key a client address ip takes in a zone keyed by
// {http.request.remote.host} with the given prefix lengths.
func ClientKey(ip string, v4, v6 int) string {
	return string(appendClient(nil, ip, v4, v6))
}

// keyHash is how a zone identifies keys. Locally a seeded maphash, which
// nobody outside the process can predict; with distributed counts, the
// first 8 bytes of SHA-256, the same on every edge, which names the key's
// counter in NATS (WireKey).
func keyHash(distributed bool, seed maphash.Seed, key []byte) uint64 {
	if distributed {
		sum := sha256.Sum256(key)
		return binary.BigEndian.Uint64(sum[:8])
	}
	return maphash.Bytes(seed, key)
}

// WireKey returns the identity of key in a distributed zone: the last
// token of the key's counter subject, hex of keyHash.
func WireKey(key string) string {
	return fmt.Sprintf("%016x", keyHash(true, maphash.Seed{}, []byte(key)))
}
