package natshttp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/projectneo/caddy-neo/internal/route"
	"github.com/projectneo/caddy-neo/modules/natsconn"
)

// ZonePlaceholder in a subject template is replaced by each zone of the
// failover order in turn.
const ZonePlaceholder = "{neo.zone}"

// DefaultSubject is the default subject template of the transport: runtime
// requests go to neo.rt.<stage>.<zone>.<tenant>.<app> (route.Subject).
var DefaultSubject = route.Subject{Stage: "{neo.stage}", Zone: ZonePlaceholder, Tenant: "{neo.tenant}", App: "{neo.app}"}.Build()

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
		if err := natsconn.ValidToken(t); err != nil {
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
// position and wraps natsconn.ErrBadToken.
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
		if err := natsconn.ValidToken(v); err != nil {
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
			if err := natsconn.ValidToken(zone); err != nil {
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
