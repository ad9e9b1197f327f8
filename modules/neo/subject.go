package neo

import "context"

// SubjectRoute is the stage, tenant and app a stage gateway took from the
// NATS subject a request arrived on (neo.rt.<stage>.<zone>.<tenant>.<app>).
// NATS permissions make the subject authoritative: who may publish on it,
// and which gateway (for one stage, or one tenant of one stage) receives it.
// neo_route therefore serves such a request only when its host and path
// resolve to exactly that tenant, stage and app; anything else is a 404
// (reason subject_mismatch), so a request sent on one tenant's subject can
// never be routed to another tenant's replicas, whatever its Host says.
type SubjectRoute struct {
	Stage, Tenant, App string
	// Zone is the zone the request was addressed to: the route's zone, so
	// that lb_policy neo_zone starts with it (a gateway may serve several).
	Zone string
}

type subjectRouteKey struct{}

// WithSubjectRoute returns ctx carrying the route of a request's subject.
// Only the stage gateway sets it; it travels in the request context, which
// no client can write.
func WithSubjectRoute(ctx context.Context, sr SubjectRoute) context.Context {
	return context.WithValue(ctx, subjectRouteKey{}, sr)
}

// SubjectRouteFrom returns the subject route of a request that came
// through a stage gateway.
func SubjectRouteFrom(ctx context.Context) (SubjectRoute, bool) {
	sr, ok := ctx.Value(subjectRouteKey{}).(SubjectRoute)
	return sr, ok
}

// matches reports whether a resolution is the subject's tenant, stage and
// app (a platform service never is).
func (sr SubjectRoute) matches(res Result) bool {
	return res.Tenant != nil && res.App != nil && res.Tenant.Name == sr.Tenant && res.Stage == sr.Stage && res.App.Name == sr.App
}
