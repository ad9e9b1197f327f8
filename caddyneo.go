// Package caddyneo is the root of the caddy-neo distribution. Importing it
// plugs every caddy-neo Caddy module into a Caddy build; xcaddy uses it as the
// local plugin named in xcaddy.json.
package caddyneo

import (
	_ "github.com/projectneo/caddy-neo/modules/all"
)
