package forwarded

import (
	"errors"
	"net/netip"
	"strings"
)

// An Element is one element of an RFC 7239 Forwarded header: the hop a
// proxy saw. Values are unquoted; empty means absent.
type Element struct {
	For, By, Host, Proto string
	// Ext holds other parameters (lowercased name, value), in order.
	Ext [][2]string
}

// Limits of ParseForwarded.
const (
	// MaxForwardedElements bounds the elements of one Forwarded header.
	MaxForwardedElements = 32
	// MaxForwardedLen bounds the header's length in bytes.
	MaxForwardedLen = 4096
)

var errForwarded = errors.New("malformed Forwarded header")

// ParseForwarded parses a Forwarded header value (several header lines joined
// with ", ") by RFC 7239's grammar:
//
//	Forwarded   = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair = token "=" value
//	value       = token / quoted-string
//
// Parameter names are case-insensitive; a parameter may appear once per
// element. It refuses (errForwarded) anything else, values with control
// characters, headers longer than MaxForwardedLen or with more than
// MaxForwardedElements elements, and for/by values that are neither an
// address (IPv6 in brackets), "unknown" nor an obfuscated identifier (_...).
func ParseForwarded(v string) ([]Element, error) {
	if len(v) > MaxForwardedLen {
		return nil, errForwarded
	}
	var out []Element
	p := parser{s: v}
	for {
		var el Element
		seen := 0
		for {
			p.ows()
			if p.done() || p.peek() == ',' || p.peek() == ';' {
				// empty pair
			} else {
				name := p.token()
				if name == "" || p.done() || p.peek() != '=' {
					return nil, errForwarded
				}
				p.i++
				val, ok := p.value()
				if !ok {
					return nil, errForwarded
				}
				name = strings.ToLower(name)
				var bit int
				switch name {
				case "for":
					bit, el.For = 1, val
				case "by":
					bit, el.By = 2, val
				case "host":
					bit, el.Host = 4, val
				case "proto":
					bit, el.Proto = 8, val
				default:
					el.Ext = append(el.Ext, [2]string{name, val})
				}
				if bit != 0 {
					if seen&bit != 0 {
						return nil, errForwarded
					}
					seen |= bit
				}
			}
			p.ows()
			if p.done() || p.peek() == ',' {
				break
			}
			if p.peek() != ';' {
				return nil, errForwarded
			}
			p.i++
		}
		if (el.For != "" && !validNode(el.For)) || (el.By != "" && !validNode(el.By)) || (el.Proto != "" && !validScheme(el.Proto)) {
			return nil, errForwarded
		}
		if seen != 0 || len(el.Ext) > 0 {
			out = append(out, el)
			if len(out) > MaxForwardedElements {
				return nil, errForwarded
			}
		}
		if p.done() {
			break
		}
		p.i++ // ','
	}
	if len(out) == 0 {
		return nil, errForwarded
	}
	return out, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

func (p *parser) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// value reads a token or a quoted-string.
func (p *parser) value() (string, bool) {
	if p.done() {
		return "", false
	}
	if p.peek() != '"' {
		t := p.token()
		return t, t != ""
	}
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), true
		case c == '\\':
			if p.i+1 >= len(p.s) || !isQuotedPairChar(p.s[p.i+1]) {
				return "", false
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isQdtext(c):
			b.WriteByte(c)
			p.i++
		default:
			return "", false
		}
	}
	return "", false
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e || c >= 0x80
}

func isQuotedPairChar(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }

// validNode checks a for/by value: an IPv4 address, an IPv6 address in
// brackets, "unknown" or an obfuscated identifier, each with an optional
// port or obfuscated port.
func validNode(v string) bool {
	host, port := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(v[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		host, port = "", v[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
	} else if i := strings.IndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i+1:]
		if port == "" {
			return false
		}
	}
	if host != "" {
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return false
			}
		} else if host != "unknown" && !obfuscated(host) {
			return false
		}
	}
	if port != "" && !obfuscated(port) {
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
		if len(port) > 5 {
			return false
		}
	}
	return true
}

func obfuscated(s string) bool {
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validScheme(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// AppendElement appends the element for a hop to b: for the client address
// (an IP, IPv6 bracketed and quoted as RFC 7239 requires), the Host the
// request named and the scheme it came with.
func AppendElement(b []byte, client netip.Addr, host, proto string) []byte {
	b = append(b, "for="...)
	if client.IsValid() {
		client = client.Unmap().WithZone("")
		if client.Is6() {
			b = append(b, `"[`...)
			b = client.AppendTo(b)
			b = append(b, `]"`...)
		} else {
			b = client.AppendTo(b)
		}
	} else {
		b = append(b, "unknown"...)
	}
	if host != "" {
		b = append(b, ";host="...)
		b = appendValue(b, host)
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	return b
}

// appendValue appends v as a token, or as a quoted-string when it is not one.
func appendValue(b []byte, v string) []byte {
	token := v != ""
	for i := 0; i < len(v); i++ {
		if !isTchar(v[i]) {
			token = false
			break
		}
	}
	if token {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case isQdtext(c):
			b = append(b, c)
		default:
			// control characters cannot be carried; Go's server refuses
			// them in Host anyway
			b = append(b, '?')
		}
	}
	return append(b, '"')
}
