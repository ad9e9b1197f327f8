package natsstorage

import (
	"errors"
	"fmt"
	"strings"
)

// errEmptyKey is returned for a key with no path segment.
var errEmptyKey = errors.New("empty storage key")

// Storage keys are paths ("certificates/acme.../example.com/example.com.crt");
// JetStream key-value keys are dot-separated tokens of [-/_=.a-zA-Z0-9]. A
// storage key is mapped to a KV key segment by segment:
//
//   - each '/'-separated segment becomes one token, tokens joined by '.';
//   - within a segment, ASCII letters, digits, '-' and '_' stay as they are and
//     every other byte (including '.', '=' and non-ASCII bytes) becomes '='
//     followed by two upper-case hex digits ("example.com" -> "example=2Ecom");
//   - empty segments (leading, trailing or doubled '/') are dropped, as a file
//     system path would.
//
// The mapping is reversible (decodeKey), keeps keys readable in `nats kv ls`,
// and a prefix of a storage key on segment boundaries is a prefix of its KV key
// on token boundaries, so "everything under a/b" is the subject filter
// "a.b.>".

// canonicalKey returns key with empty segments dropped.
func canonicalKey(key string) string {
	return strings.Join(segments(key), "/")
}

func segments(key string) []string {
	parts := strings.Split(key, "/")
	out := parts[:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

const hexDigits = "0123456789ABCDEF"

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// encodeKey maps a storage key to a KV key.
func encodeKey(key string) (string, error) {
	segs := segments(key)
	if len(segs) == 0 {
		return "", errEmptyKey
	}
	var b strings.Builder
	b.Grow(len(key) + 8)
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('.')
		}
		for j := 0; j < len(s); j++ {
			c := s[j]
			if plainByte(c) {
				b.WriteByte(c)
				continue
			}
			b.WriteByte('=')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		}
	}
	return b.String(), nil
}

// decodeKey maps a KV key written by encodeKey back to its storage key.
func decodeKey(enc string) (string, error) {
	if enc == "" {
		return "", errEmptyKey
	}
	var b strings.Builder
	b.Grow(len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		switch {
		case c == '.':
			if i == 0 || i == len(enc)-1 || enc[i-1] == '.' {
				return "", fmt.Errorf("kv key %q: empty token", enc)
			}
			b.WriteByte('/')
		case c == '=':
			if i+2 >= len(enc) {
				return "", fmt.Errorf("kv key %q: truncated escape", enc)
			}
			hi, lo := unhex(enc[i+1]), unhex(enc[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("kv key %q: bad escape", enc)
			}
			if hi<<4|lo == '/' || plainByte(byte(hi<<4|lo)) {
				return "", fmt.Errorf("kv key %q: escape not written by this storage", enc)
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		case plainByte(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("kv key %q: byte %q not written by this storage", enc, c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
