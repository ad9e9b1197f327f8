package edgewaf

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("neo_waf", cfblock.Handler[Handler])
	httpcaddyfile.RegisterDirectiveOrder("neo_waf", httpcaddyfile.Before, "basic_auth")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Its block is
// the block of coraza-caddy's coraza_waf directive:
//
//	neo_waf {
//	    load_owasp_crs
//	    directives `...`
//	    include <file>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	mod, err := caddy.GetModule("http.handlers.waf")
	if err != nil {
		return d.Errf("neo_waf: the coraza WAF module (http.handlers.waf) is not in this build: %v", err)
	}
	waf := mod.New()
	um, ok := waf.(caddyfile.Unmarshaler)
	if !ok {
		return d.Errf("neo_waf: http.handlers.waf cannot read a Caddyfile")
	}
	if err := um.UnmarshalCaddyfile(d); err != nil {
		return err
	}
	h.WAFRaw = caddyconfig.JSONModuleObject(waf, "handler", "waf", nil)
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
