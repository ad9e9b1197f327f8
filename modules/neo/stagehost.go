package neo

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	caddy.RegisterModule(StageHostHandler{})
	httpcaddyfile.RegisterHandlerDirective("neo_stage_host", cfblock.Handler[StageHostHandler])
	httpcaddyfile.RegisterDirectiveOrder("neo_stage_host", httpcaddyfile.Before, "map")
}

// StageHostHandler is `http.handlers.neo_stage_host`: it sets
// `{neo.stage_host}` to the Runtime host of a tenant in a stage, as the
// registry names it (`<tenant>.<runtime_domain>` in production,
// `<tenant>-<stage>.<runtime_domain>` in the other stages), for a listener
// that sends requests by stage and tenant, such as the platform's internal
// gateway (caddyfiles/platform.Caddyfile), whose stage gateway's neo_route
// then resolves that host again. A tenant or stage the registry does not
// have gets the generic 404 (an error with status 404, reason logged).
//
// Caddyfile (arguments take placeholders):
//
//	neo_stage_host <stage> <tenant>
type StageHostHandler struct {
	// Stage is the stage name, usually a placeholder. Required.
	Stage string `json:"stage"`
	// Tenant is the tenant name, usually a placeholder. Required.
	Tenant string `json:"tenant"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (StageHostHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_stage_host",
		New: func() caddy.Module { return new(StageHostHandler) },
	}
}

// Provision finds the neo app.
func (h *StageHostHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	a, err := neoApp(ctx, "neo_stage_host")
	if err != nil {
		return err
	}
	h.app = a
	return nil
}

// Validate requires both names.
func (h *StageHostHandler) Validate() error {
	if h.Stage == "" {
		return fmt.Errorf("neo_stage_host: stage: required")
	}
	if h.Tenant == "" {
		return fmt.Errorf("neo_stage_host: tenant: required")
	}
	return nil
}

// UnmarshalCaddyfile: `neo_stage_host <stage> <tenant>`.
func (h *StageHostHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.Args(&h.Stage, &h.Tenant) {
		return d.Errf("neo_stage_host: want <stage> <tenant>")
	}
	if d.NextArg() {
		return d.Errf("neo_stage_host: want <stage> <tenant>, got an extra argument %q", d.Val())
	}
	if d.NextBlock(0) {
		return d.Errf("neo_stage_host: takes no block")
	}
	return nil
}

// ServeHTTP sets {neo.stage_host} and calls next.
func (h *StageHostHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("neo_stage_host: no replacer"))
	}
	stage, tenant := repl.ReplaceAll(h.Stage, ""), repl.ReplaceAll(h.Tenant, "")
	host, ok := h.app.reg.Snapshot().RuntimeHost(tenant, stage)
	if !ok {
		h.logger.Info("not routed", zap.String("tenant", tenant), zap.String("stage", stage), zap.String("reason", "unknown tenant or stage"))
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("neo: not routed (no tenant %q in stage %q)", tenant, stage))
	}
	repl.Set("neo.stage_host", host)
	return next.ServeHTTP(w, r)
}

// RuntimeHost returns the Runtime host of an existing tenant in a stage of
// this registry.
func (s *Snapshot) RuntimeHost(tenant, stage string) (string, bool) {
	i, ok := s.g.stages.index[stage]
	if !ok {
		return "", false
	}
	if _, ok := s.tenants.Get(tenant); !ok {
		return "", false
	}
	return s.g.stages.hostLabel(tenant, i) + s.g.runtimeSuffix, true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*StageHostHandler)(nil)
	_ caddy.Validator             = (*StageHostHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*StageHostHandler)(nil)
	_ caddyfile.Unmarshaler       = (*StageHostHandler)(nil)
)
