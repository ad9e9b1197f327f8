package cfblock

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// Duration parses a subdirective's duration value (Caddy's syntax: "5s",
// "1d"); a negative or malformed value is an error at the dispenser's line.
func Duration(d *caddyfile.Dispenser, s string) (caddy.Duration, error) {
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, d.Errf("bad duration %q", s)
	}
	return caddy.Duration(v), nil
}

// Size parses a subdirective's size in bytes ("64KiB", "1MB", "4096"), at
// most 1 GiB.
func Size(d *caddyfile.Dispenser, s string) (int, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<30 {
		return 0, d.Errf("bad size %q", s)
	}
	return int(n), nil
}

// Count parses a subdirective's non-negative integer.
func Count(d *caddyfile.Dispenser, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("want a non-negative integer, got %q", s)
	}
	return n, nil
}
