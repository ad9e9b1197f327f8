// Package all blank-imports every caddy-neo Caddy module, so that one import
// plugs the whole distribution into a Caddy build (cmd/caddy, xcaddy).
package all

import (
	_ "github.com/projectneo/caddy-neo/modules/bruteforce"
	_ "github.com/projectneo/caddy-neo/modules/echo"
	_ "github.com/projectneo/caddy-neo/modules/edgewaf"
	_ "github.com/projectneo/caddy-neo/modules/egress"
	_ "github.com/projectneo/caddy-neo/modules/forwarded"
	_ "github.com/projectneo/caddy-neo/modules/framing"
	_ "github.com/projectneo/caddy-neo/modules/identity"
	_ "github.com/projectneo/caddy-neo/modules/logredact"
	_ "github.com/projectneo/caddy-neo/modules/natsconn"
	_ "github.com/projectneo/caddy-neo/modules/natshttp"
	_ "github.com/projectneo/caddy-neo/modules/natskv"
	_ "github.com/projectneo/caddy-neo/modules/natsstorage"
	_ "github.com/projectneo/caddy-neo/modules/neo"
	_ "github.com/projectneo/caddy-neo/modules/neoegress"
	_ "github.com/projectneo/caddy-neo/modules/ratelimit"
	_ "github.com/projectneo/caddy-neo/modules/secrets"
	_ "github.com/projectneo/caddy-neo/modules/sni"
	_ "github.com/projectneo/caddy-neo/modules/wafaccel"
)
