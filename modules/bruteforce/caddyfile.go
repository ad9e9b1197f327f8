package bruteforce

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_login_user", cfblock.Handler[LoginUser])
	httpcaddyfile.RegisterDirectiveOrder("neo_login_user", httpcaddyfile.Before, "request_body")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	neo_login_user [<field>...] {
//	    fields   <field>...
//	    max_body <size>
//	}
//
// Fields may be given inline or in the block, not both.
func (l *LoginUser) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	l.Fields = d.RemainingArgs()
	return cfblock.Walk(d, "neo_login_user", func(name string) error {
		switch name {
		case "fields":
			if len(l.Fields) > 0 {
				return d.Errf("neo_login_user: fields given inline and in the block")
			}
			fields, err := cfblock.Args(d, 1, -1)
			if err != nil {
				return err
			}
			l.Fields = fields
		case "max_body":
			v, err := cfblock.One(d)
			if err != nil {
				return err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 || n > 16<<20 {
				return d.Errf("neo_login_user: max_body: want a size from 1 byte to 16MiB, got %q", v)
			}
			l.MaxBody = int64(n)
		default:
			return cfblock.Unknown(d, "neo_login_user", name)
		}
		return nil
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*LoginUser)(nil)
