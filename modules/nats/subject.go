package neonats

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// ZonePlaceholder in a subject template is replaced by each zone of the
// failover order in turn.
const ZonePlaceholder = "{neo.zone}"

// DefaultSubject is the default subject template of the transport: runtime
// requests go to neo.rt.<stage>.<zone>.<tenant>.<app>.
const DefaultSubject = "neo.rt.{neo.stage}." + ZonePlaceholder + ".{neo.tenant}.{neo.app}"

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

// validSubject reports whether s is a literal subject of valid tokens.
func validSubject(s string) bool {
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

// validPattern reports whether s is a subject that may contain wildcards
// ('*' as a whole token, '>' as the whole last token).
func validPattern(s string) bool {
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

// SubjectTemplate is a subject whose tokens may hold placeholders. Each token
// is expanded on its own and the result validated as one token, so no
// placeholder value can add tokens or wildcards.
type SubjectTemplate struct {
	tokens  []string
	hasZone bool
}

// ParseSubjectTemplate splits a template into tokens; literal tokens must be
// valid, and the zone placeholder must stand alone in its token.
func ParseSubjectTemplate(tmpl string) (*SubjectTemplate, error) {
	if tmpl == "" {
		return nil, errors.New("empty subject template")
	}
	toks, err := splitTemplate(tmpl)
	if err != nil {
		return nil, fmt.Errorf("subject %q: %w", tmpl, err)
	}
	st := &SubjectTemplate{tokens: toks}
	for _, t := range st.tokens {
		if t == ZonePlaceholder {
			if st.hasZone {
				return nil, fmt.Errorf("subject %q: %s appears twice", tmpl, ZonePlaceholder)
			}
			st.hasZone = true
			continue
		}
		if strings.Contains(t, ZonePlaceholder) {
			return nil, fmt.Errorf("subject %q: %s must be a whole token", tmpl, ZonePlaceholder)
		}
		if strings.Contains(t, "{") {
			continue
		}
		if err := ValidToken(t); err != nil {
			return nil, fmt.Errorf("subject %q: %w", tmpl, err)
		}
	}
	return st, nil
}

// HasZone reports whether the template has a zone token.
func (st *SubjectTemplate) HasZone() bool { return st.hasZone }

// Expander expands a template with a replacer; tokens other than the zone are
// expanded once and reused for every zone.
type Expander struct {
	st     *SubjectTemplate
	tokens []string
}

// Expand resolves every non-zone token. The error names the offending token
// position and wraps ErrBadToken.
func (st *SubjectTemplate) Expand(repl *caddy.Replacer) (*Expander, error) {
	out := make([]string, len(st.tokens))
	for i, t := range st.tokens {
		if t == ZonePlaceholder {
			continue
		}
		v := t
		if repl != nil && strings.Contains(t, "{") {
			v = repl.ReplaceAll(t, "")
		}
		if err := ValidToken(v); err != nil {
			return nil, fmt.Errorf("subject token %d (%s): %w", i+1, t, err)
		}
		out[i] = v
	}
	return &Expander{st: st, tokens: out}, nil
}

// Subject returns the subject for a zone (ignored when the template has no
// zone token).
func (e *Expander) Subject(zone string) (string, error) {
	var b strings.Builder
	for i, t := range e.tokens {
		if i > 0 {
			b.WriteByte('.')
		}
		if e.st.tokens[i] == ZonePlaceholder {
			if err := ValidToken(zone); err != nil {
				return "", fmt.Errorf("zone: %w", err)
			}
			t = zone
		}
		b.WriteString(t)
	}
	return b.String(), nil
}

// splitTemplate splits a subject template on the dots outside placeholders.
func splitTemplate(tmpl string) ([]string, error) {
	var toks []string
	depth, start := 0, 0
	for i := 0; i < len(tmpl); i++ {
		switch tmpl[i] {
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return nil, errors.New("unbalanced '}'")
			}
			depth--
		case '.':
			if depth == 0 {
				toks = append(toks, tmpl[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced '{'")
	}
	return append(toks, tmpl[start:]), nil
}
