// Package cfblock reads the block of a Caddyfile directive the way every
// caddy-neo parser does: each subdirective once unless it is declared
// repeatable, a fixed number of arguments, and errors that name the
// directive, the subdirective and (through the dispenser) the file and line.
//
// A parser reads its directive line, then hands the block to Walk:
//
//	d.Next() // directive name
//	if d.NextArg() {
//		return d.ArgErr()
//	}
//	return cfblock.Walk(d, "neo_egress", func(name string) error {
//		var err error
//		switch name {
//		case "zone":
//			g.Zone, err = cfblock.One(d)
//		case "caller":
//			var args []string
//			args, err = cfblock.Args(d, 2, 4)
//			...
//		default:
//			return cfblock.Unknown(d, "neo_egress", name)
//		}
//		return err
//	}, "caller") // caller may repeat
//
// Values is the shorter form for blocks whose subdirectives all take one
// argument.
package cfblock

import (
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Walk calls each once per subdirective of the block that opens at the end
// of the dispenser's current line, at whatever nesting the dispenser is
// (a directive's block, or a block inside one). When each is called the
// dispenser is on the subdirective's name, which each also receives; each
// reads the arguments and any nested block. A subdirective given twice is an
// error, unless it is listed in repeatable. directive names the block in
// errors: "neo_echo", or "nats: connection" for a nested block. Walk returns
// the first error of each unchanged; without a block it calls each never.
func Walk(d *caddyfile.Dispenser, directive string, each func(name string) error, repeatable ...string) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if !slices.Contains(repeatable, name) {
			if seen[name] {
				return d.Errf("%s: duplicate subdirective %q", directive, name)
			}
			seen[name] = true
		}
		if err := each(name); err != nil {
			return err
		}
	}
	return nil
}

// Values is Walk for a block whose every subdirective takes exactly one
// argument (`name value`): each receives the name and the value. No
// subdirective repeats. The argument count is checked before each is called,
// so a bad count is reported even for a name each does not know.
func Values(d *caddyfile.Dispenser, directive string, each func(name, value string) error) error {
	return Walk(d, directive, func(name string) error {
		v, err := One(d)
		if err != nil {
			return err
		}
		return each(name, v)
	})
}

// One returns the single argument of the current subdirective. Missing or
// extra arguments are the dispenser's ArgErr prefixed with the subdirective.
func One(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", argErr(d, name)
	}
	return v, nil
}

// Args returns the remaining arguments of the current subdirective, which
// must number at least min and, when max >= 0, at most max; otherwise the
// error is the dispenser's ArgErr prefixed with the subdirective.
func Args(d *caddyfile.Dispenser, min, max int) ([]string, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) < min || (max >= 0 && len(args) > max) {
		return nil, argErr(d, name)
	}
	return args, nil
}

// Flag checks that the current subdirective has no argument (a flag such
// as zone_header).
func Flag(d *caddyfile.Dispenser) error {
	name := d.Val()
	if d.NextArg() {
		return argErr(d, name)
	}
	return nil
}

// Unknown is the error for a subdirective name the directive does not know.
func Unknown(d *caddyfile.Dispenser, directive, name string) error {
	return d.Errf("%s: unknown subdirective %q", directive, name)
}

func argErr(d *caddyfile.Dispenser, name string) error {
	return fmt.Errorf("%s: %w", name, d.ArgErr())
}
