package neo

import (
	"context"

	"github.com/projectneo/caddy-neo/internal/route"
)

// SubjectRoute is the stage, zone, tenant and app a stage gateway took from
// the NATS subject a request arrived on (neo.rt.<stage>.<zone>.<tenant>.<app>):
// see route.Subject, which it is.
type SubjectRoute = route.Subject

// WithSubjectRoute returns ctx carrying the route of a request's subject.
// Only the stage gateway sets it; it travels in the request context, which
// no client can write.
func WithSubjectRoute(ctx context.Context, sr SubjectRoute) context.Context {
	return route.WithSubject(ctx, sr)
}

// SubjectRouteFrom returns the subject route of a request that came
// through a stage gateway.
func SubjectRouteFrom(ctx context.Context) (SubjectRoute, bool) {
	return route.SubjectFrom(ctx)
}

// subjectMatches reports whether a resolution is the subject's tenant,
// stage and app (a platform service never is).
func subjectMatches(sr SubjectRoute, res Result) bool {
	return res.Tenant != nil && res.App != nil && res.Tenant.Name == sr.Tenant && res.Stage == sr.Stage && res.App.Name == sr.App
}
