package natsconn

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadToken is wrapped by every error about a subject token.
var ErrBadToken = errors.New("invalid subject token")

// maxTokenLen bounds a single subject token.
const maxTokenLen = 128

// ValidToken reports why s may not be used as one subject token, or nil.
// Tokens are printable ASCII without '.', '*', '>', whitespace, control
// characters or non-ASCII bytes, 1 to 128 bytes long. Nothing is escaped: a
// value that does not fit is rejected, so that it can never address a
// different subject.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadToken)
	}
	if len(s) > maxTokenLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadToken, maxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("%w: %q has a space, control or non-ASCII byte at %d", ErrBadToken, s, i)
		case c == '.' || c == '*' || c == '>':
			return fmt.Errorf("%w: %q has %q at %d", ErrBadToken, s, c, i)
		}
	}
	return nil
}

// ValidSubject reports whether s is a literal subject of valid tokens.
func ValidSubject(s string) bool {
	for {
		t, rest, more := strings.Cut(s, ".")
		if !validTokenBytes(t) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// validTokenBytes is ValidToken without the error (no allocation).
func validTokenBytes(s string) bool {
	if s == "" || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// ValidPattern reports whether s is a subject that may contain wildcards
// ('*' as a whole token, '>' as the whole last token).
func ValidPattern(s string) bool {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "*" || (t == ">" && i == len(toks)-1) {
			continue
		}
		if ValidToken(t) != nil {
			return false
		}
	}
	return true
}
