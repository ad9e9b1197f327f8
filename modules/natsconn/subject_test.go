package natsconn

import (
	"errors"
	"strings"
	"testing"
)

func TestValidToken(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"acme", true}, {"az-a", true}, {"a_b-9", true}, {"A", true},
		{"", false}, {"a.b", false}, {"*", false}, {">", false}, {"a*", false}, {"a>", false},
		{"a b", false}, {"a\tb", false}, {"a\nb", false}, {"a\x00", false}, {"a\x7f", false},
		{"é", false}, {"ａ", false}, {strings.Repeat("a", 128), true}, {strings.Repeat("a", 129), false},
	} {
		err := ValidToken(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ValidToken(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadToken) {
			t.Errorf("ValidToken(%q): error does not wrap ErrBadToken", c.in)
		}
	}
}
