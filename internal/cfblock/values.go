package cfblock

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// Duration parses the value s of subdirective name as a duration (Caddy's
// syntax: "5s", "1d"); a negative or malformed value is an error naming
// the subdirective, at the dispenser's line.
func Duration(d *caddyfile.Dispenser, name, s string) (caddy.Duration, error) {
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, d.Errf("%s: bad duration %q", name, s)
	}
	return caddy.Duration(v), nil
}

// Size parses the value s of subdirective name as a size in bytes
// ("64KiB", "1MB", "4096"), at most 1 GiB.
func Size(d *caddyfile.Dispenser, name, s string) (int, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<30 {
		return 0, d.Errf("%s: bad size %q", name, s)
	}
	return int(n), nil
}

// Count parses the value s of subdirective name as a non-negative integer.
func Count(d *caddyfile.Dispenser, name, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: want a non-negative integer, got %q", name, s)
	}
	return n, nil
}
