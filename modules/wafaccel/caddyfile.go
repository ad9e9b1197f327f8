package wafaccel

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo_waf_accel", parseGlobalOption)
}

// parseGlobalOption sets up the neo_waf_accel app from the global option
//
//	neo_waf_accel on|off
//
// or the block form
//
//	neo_waf_accel {
//		off
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "neo_waf_accel", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the neo_waf_accel global option (see
// parseGlobalOption for the syntax).
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	args := d.RemainingArgs()
	switch len(args) {
	case 0:
	case 1:
		switch args[0] {
		case "on":
			a.Off = false
		case "off":
			a.Off = true
		default:
			return d.Errf("neo_waf_accel: unknown argument %q (want on or off)", args[0])
		}
	default:
		return d.ArgErr()
	}
	seen := len(args) == 1
	for d.NextBlock(0) {
		if seen {
			return d.Errf("neo_waf_accel: on/off given twice")
		}
		seen = true
		switch d.Val() {
		case "on", "off":
			a.Off = d.Val() == "off"
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("neo_waf_accel: unknown subdirective %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
