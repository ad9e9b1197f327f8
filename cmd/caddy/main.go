// Command caddy is the caddy-neo distribution: Caddy's standard modules, the
// caddy-neo modules, and the third-party plugins listed in xcaddy.json.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Third-party plugins (keep in step with xcaddy.json and go.mod).
	_ "github.com/corazawaf/coraza-caddy/v2"
	_ "github.com/greenpau/caddy-security"
	_ "github.com/mholt/caddy-ratelimit"

	// caddy-neo's own modules.
	_ "github.com/projectneo/caddy-neo"

	"github.com/projectneo/caddy-neo/internal/renamed"
)

func main() {
	// Old, un-namespaced names fail naming the new ones (after every
	// plugin's init, so that a plugin owning such a name keeps it).
	renamed.Register()
	caddycmd.Main()
}
