package echo

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
)

func caddyCtx() caddy.Context { return caddy.Context{} }

func itoa(i int) string { return strconv.Itoa(i) }
