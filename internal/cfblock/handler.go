package cfblock

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Handler parses a handler directive whose whole syntax is read by the
// UnmarshalCaddyfile of a new T; register it with
// httpcaddyfile.RegisterHandlerDirective("neo_echo", cfblock.Handler[Echo]).
// Like a hand-written parser it returns the handler with any error.
func Handler[T any, PT interface {
	*T
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	v := PT(new(T))
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}
