package neo

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Upstreams{})
}

// Upstreams is `http.reverse_proxy.upstreams.neo` (Caddyfile `dynamic neo`):
// it yields the replicas of the route neo_route resolved for
// the request (the app's replicas in the stage, or the platform service's
// replicas), in configuration order; the reverse proxy's load-balancing
// policy chooses among them. A request that neo_route did not resolve gets
// no upstreams (the proxy answers 502), never another tenant's replicas.
//
// Zone preference, per-tenant rotation and active health checks are the
// selection policy's (`lb_policy neo_zone`, package zonelb), which reads the
// route's pool these upstreams come from.
type Upstreams struct{}

// CaddyModule returns the Caddy module information.
func (Upstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.neo",
		New: func() caddy.Module { return new(Upstreams) },
	}
}

// GetUpstreams returns fresh Upstream values (the proxy mutates them) for
// the resolved route's replicas.
func (Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	rt, ok := RouteFromRequest(r)
	if !ok {
		return nil, nil
	}
	ups := make([]*reverseproxy.Upstream, len(rt.Replicas))
	backing := make([]reverseproxy.Upstream, len(rt.Replicas))
	for i, rep := range rt.Replicas {
		backing[i].Dial = rep.Address
		ups[i] = &backing[i]
	}
	return ups, nil
}

// UnmarshalCaddyfile: `dynamic neo` takes no arguments.
func (u *Upstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("dynamic neo: takes no block")
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.UpstreamSource = (*Upstreams)(nil)
	_ caddyfile.Unmarshaler       = (*Upstreams)(nil)
)
