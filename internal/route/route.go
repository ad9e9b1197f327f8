// Package route is the route of a runtime request: the stage, zone, tenant
// and app it is addressed to, and the NATS subject that carries it,
// neo.rt.<stage>.<zone>.<tenant>.<app>.
//
// The edge's transport builds the subject (modules/natshttp), the stage
// gateway parses it back and hands the route to the tenant registry's
// neo_route in the request context (modules/neo), and the NATS permissions
// in caddyfiles/nats are written against the same scheme. The package is a
// leaf: it imports only the standard library and registers no module, so
// the transport, the gateway and the registry share it without linking each
// other.
package route

import (
	"context"
	"strings"
)

// Prefix is the subject's first two tokens, "neo.rt", with the dot after them.
const Prefix = "neo.rt."

// All matches every runtime subject.
const All = Prefix + ">"

// Subject is the route a runtime subject names: the stage, zone, tenant
// and app of neo.rt.<stage>.<zone>.<tenant>.<app>.
//
// NATS permissions make the subject authoritative: who may publish on it,
// and which gateway (for one stage, or one tenant of one stage) receives
// it. The registry's neo_route therefore serves a request that came through
// a stage gateway only when its host and path resolve to exactly that
// tenant, stage and app (reason subject_mismatch otherwise), so a request
// sent on one tenant's subject can never be routed to another tenant's
// replicas, whatever its Host says.
type Subject struct {
	Stage, Tenant, App string
	// Zone is the zone the request was addressed to: the route's zone, so
	// that lb_policy neo_zone starts with it (a gateway may serve several).
	Zone string
}

// Build returns the subject neo.rt.<stage>.<zone>.<tenant>.<app>. The
// fields are used as they are: callers put in valid tokens (or, for a
// template, placeholders that expand to one).
func (s Subject) Build() string {
	return Prefix + s.Stage + "." + s.Zone + "." + s.Tenant + "." + s.App
}

// ParseSubject returns the route of a subject that follows the scheme:
// exactly six tokens, the first two "neo" and "rt". It does not allocate.
func ParseSubject(subj string) (Subject, bool) {
	var toks [6]string
	if !splitSubject(subj, toks[:]) || toks[0] != "neo" || toks[1] != "rt" {
		return Subject{}, false
	}
	return Subject{Stage: toks[2], Zone: toks[3], Tenant: toks[4], App: toks[5]}, true
}

// Pattern is the wildcard subject of every request to a stage and zone,
// neo.rt.<stage>.<zone>.>, or with a tenant to that tenant's apps only,
// neo.rt.<stage>.<zone>.<tenant>.>. Either of stage and zone may be "*".
func Pattern(stage, zone, tenant string) string {
	s := Prefix + stage + "." + zone + "."
	if tenant != "" {
		s += tenant + "."
	}
	return s + ">"
}

// splitSubject splits a subject into toks when it has exactly len(toks)
// tokens.
func splitSubject(subj string, toks []string) bool {
	for i := range toks {
		if i == len(toks)-1 {
			toks[i] = subj
			return !strings.Contains(subj, ".")
		}
		j := strings.IndexByte(subj, '.')
		if j < 0 {
			return false
		}
		toks[i], subj = subj[:j], subj[j+1:]
	}
	return false
}

type subjectKey struct{}

// WithSubject returns ctx carrying the route of a request's subject. Only
// the stage gateway sets it; it travels in the request context, which no
// client can write.
func WithSubject(ctx context.Context, s Subject) context.Context {
	return context.WithValue(ctx, subjectKey{}, s)
}

// SubjectFrom returns the subject route of a request that came through a
// stage gateway.
func SubjectFrom(ctx context.Context) (Subject, bool) {
	s, ok := ctx.Value(subjectKey{}).(Subject)
	return s, ok
}
