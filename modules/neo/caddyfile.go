package neo

import (
	"strconv"
	"strings"

	"encoding/json"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("neo_route", cfblock.Handler[RouteHandler])
	httpcaddyfile.RegisterDirectiveOrder("neo_route", httpcaddyfile.Before, "map")
}

// parseGlobalOption parses the `neo` global option. It may appear more than
// once (for example once in the role Caddyfile and once per imported tenant
// file); the blocks are merged, and a setting or tenant given twice is an error.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	a := new(App)
	if existing != nil {
		if err := json.Unmarshal(existing.(httpcaddyfile.App).Value, a); err != nil {
			return nil, err
		}
	}
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "neo", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the neo app from the `neo` global option:
//
//	neo {
//	    zone             <zone>
//	    zones            <zone>...
//	    platform_domain  <domain>
//	    runtime_domain   <domain>
//	    stages           <first> ... <production>
//	    store file       [<dir>]
//	    store nats       { ... }   (see neo.stores.nats)
//	    metrics_no_tenant_label
//	    welcome          <text>    (repeatable)
//	    service <name> <path-prefix> {
//	        replica <host:port> [<zone>]
//	    }
//	    tenant <name> {
//	        app <name> {
//	            stage <stage> {
//	                replica <host:port> [<zone>]
//	            }
//	        }
//	        domain <host> <stage> {
//	            default_app <app> [redirect|rewrite]
//	            pending
//	        }
//	        waf {
//	            mode     blocking|detection_only
//	            paranoia <1-4>
//	            exclude  <rule id|range|tag:<tag>>... [{
//	                path <path>
//	                args <name>...
//	            }]
//	        }
//	        rate_limit_tier <tier>
//	        identity { ... }      (caddyfile_identity.go)
//	    }
//	    identity <tenant> { ... } (the identity of a tenant defined above)
//	}
//
// `import` works inside the block, so each tenant can live in its own file
// (`import tenants/*.caddy`).
//
// At the end of each block the registry is validated as Provision will
// validate it, and a mistake is reported with the file and line it was
// written at (a tenant file's, for a tenant): a replica without a zone or in
// an undeclared zone, a replica listed twice, an unknown stage or app,
// ambiguous host names. Declare stages, zones and domains before the tenants.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	src := sources{}
	for d.NextBlock(0) {
		name := d.Val()
		src.mark(name, d)
		switch name {
		case "zone", "platform_domain", "runtime_domain":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			dst := map[string]*string{"zone": &a.Zone, "platform_domain": &a.PlatformDomain, "runtime_domain": &a.RuntimeDomain}[name]
			if *dst != "" {
				return d.Errf("neo: %s given twice", name)
			}
			*dst = v
		case "stages":
			if a.Stages != nil {
				return d.Errf("neo: stages given twice")
			}
			a.Stages = d.RemainingArgs()
			if len(a.Stages) == 0 {
				return d.ArgErr()
			}
		case "welcome":
			var line string
			if !d.Args(&line) || d.NextArg() {
				return d.ArgErr()
			}
			a.Welcome = append(a.Welcome, line)
		case "metrics_no_tenant_label":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.MetricsNoTenantLabel = true
		case "disable_panic":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.DisablePanic = true
		case "zones":
			if a.Zones != nil {
				return d.Errf("neo: zones given twice")
			}
			a.Zones = d.RemainingArgs()
			if len(a.Zones) == 0 {
				return d.ArgErr()
			}
		case "zone_order":
			if a.ZoneOrder != nil {
				return d.Errf("neo: zone_order given twice")
			}
			a.ZoneOrder = d.RemainingArgs()
			if len(a.ZoneOrder) == 0 {
				return d.ArgErr()
			}
		case "local_threshold", "panic_threshold":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return d.Errf("neo: %s: want a share such as 0.5, got %q", name, v)
			}
			if name == "local_threshold" {
				a.LocalThreshold = f
			} else {
				a.PanicThreshold = f
			}
		case "store":
			if a.StoreRaw != nil {
				return d.Errf("neo: store given twice")
			}
			var mod string
			if !d.Args(&mod) {
				return d.ArgErr()
			}
			if mod != "file" {
				// Other stores (nats) parse their own arguments and block.
				if _, err := caddy.GetModule("neo.stores." + mod); err != nil {
					known := []string{}
					for _, m := range caddy.GetModules("neo.stores") {
						known = append(known, m.ID.Name())
					}
					return d.Errf("neo: unknown store %q (known: %s)", mod, strings.Join(known, ", "))
				}
				unm, err := caddyfile.UnmarshalModule(d, "neo.stores."+mod)
				if err != nil {
					return d.Errf("neo: store %s: %v", mod, err)
				}
				a.StoreRaw = caddyconfig.JSONModuleObject(unm, "module", mod, nil)
				continue
			}
			fs := FileStore{}
			if d.NextArg() {
				fs.Dir = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			a.StoreRaw = caddyconfig.JSONModuleObject(fs, "module", "file", nil)
		case "service":
			var sn, path string
			if !d.Args(&sn, &path) || d.NextArg() {
				return d.ArgErr()
			}
			if a.Services == nil {
				a.Services = map[string]*ServiceConfig{}
			}
			if _, dup := a.Services[sn]; dup {
				return d.Errf("neo: service %q defined twice", sn)
			}
			sc := &ServiceConfig{Path: path}
			src.mark("services."+sn, d)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if d.Val() != "replica" {
					return d.Errf("neo: service %s: unknown subdirective %q", sn, d.Val())
				}
				src.mark("services."+sn+".replicas["+strconv.Itoa(len(sc.Replicas))+"]", d)
				r, err := parseReplica(d)
				if err != nil {
					return err
				}
				sc.Replicas = append(sc.Replicas, r)
			}
			a.Services[sn] = sc
		case "tenant":
			var tn string
			if !d.Args(&tn) || d.NextArg() {
				return d.ArgErr()
			}
			if a.Tenants == nil {
				a.Tenants = map[string]*TenantConfig{}
			}
			if _, dup := a.Tenants[tn]; dup {
				return d.Errf("neo: tenant %q defined twice", tn)
			}
			src.mark("tenants."+tn, d)
			tc, err := parseTenantBlock(d, tn, src)
			if err != nil {
				return err
			}
			a.Tenants[tn] = tc
		case "identity":
			// A tenant's identity apart from its tenant file (the local
			// topology keeps its demo users out of the tenant files).
			var tn string
			if !d.Args(&tn) || d.NextArg() {
				return d.ArgErr()
			}
			tc, ok := a.Tenants[tn]
			if !ok {
				return d.Errf("neo: identity %s: no tenant %q defined before it", tn, tn)
			}
			if tc.Identity != nil {
				return d.Errf("neo: tenant %s: identity defined twice", tn)
			}
			ic, err := parseIdentityBlock(d, tn)
			if err != nil {
				return err
			}
			tc.Identity = ic
		default:
			return d.Errf("neo: unknown subdirective %q", name)
		}
	}
	return a.checkAdapted(src)
}

func parseReplica(d *caddyfile.Dispenser) (Replica, error) {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return Replica{}, d.ArgErr()
	}
	r := Replica{Address: args[0]}
	if len(args) == 2 {
		r.Zone = args[1]
	}
	return r, nil
}

func parseTenantBlock(d *caddyfile.Dispenser, tn string, src sources) (*TenantConfig, error) {
	tc := &TenantConfig{}
	field := "tenants." + tn
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		src.mark(field+"."+d.Val(), d)
		switch d.Val() {
		case "app":
			var an string
			if !d.Args(&an) || d.NextArg() {
				return nil, d.ArgErr()
			}
			if tc.Apps == nil {
				tc.Apps = map[string]*AppConfig{}
			}
			if _, dup := tc.Apps[an]; dup {
				return nil, d.Errf("neo: tenant %s: app %q defined twice", tn, an)
			}
			ac := &AppConfig{Stages: map[string]*StageConfig{}}
			af := field + ".apps." + an
			src.mark(af, d)
			for n2 := d.Nesting(); d.NextBlock(n2); {
				if d.Val() == "public" {
					if d.NextArg() {
						return nil, d.ArgErr()
					}
					ac.Public = true
					continue
				}
				if d.Val() == "protocol" {
					var proto string
					if !d.Args(&proto) || d.NextArg() {
						return nil, d.ArgErr()
					}
					if ac.Protocol != "" {
						return nil, d.Errf("neo: tenant %s app %s: protocol given twice", tn, an)
					}
					if proto != ProtocolH1 && proto != ProtocolH2C {
						return nil, d.Errf("neo: tenant %s app %s: protocol must be %s or %s, got %q", tn, an, ProtocolH1, ProtocolH2C, proto)
					}
					ac.Protocol = proto
					continue
				}
				if d.Val() != "stage" {
					return nil, d.Errf("neo: tenant %s app %s: unknown subdirective %q", tn, an, d.Val())
				}
				var sn string
				if !d.Args(&sn) || d.NextArg() {
					return nil, d.ArgErr()
				}
				if _, dup := ac.Stages[sn]; dup {
					return nil, d.Errf("neo: tenant %s app %s: stage %q defined twice", tn, an, sn)
				}
				sc := &StageConfig{}
				sf := af + ".stages." + sn
				src.mark(sf, d)
				for n3 := d.Nesting(); d.NextBlock(n3); {
					if d.Val() != "replica" {
						return nil, d.Errf("neo: tenant %s app %s stage %s: unknown subdirective %q", tn, an, sn, d.Val())
					}
					src.mark(sf+".replicas["+strconv.Itoa(len(sc.Replicas))+"]", d)
					r, err := parseReplica(d)
					if err != nil {
						return nil, err
					}
					sc.Replicas = append(sc.Replicas, r)
				}
				ac.Stages[sn] = sc
			}
			tc.Apps[an] = ac
		case "domain":
			var host, stage string
			if !d.Args(&host, &stage) || d.NextArg() {
				return nil, d.ArgErr()
			}
			if tc.Domains == nil {
				tc.Domains = map[string]*DomainConfig{}
			}
			if _, dup := tc.Domains[host]; dup {
				return nil, d.Errf("neo: tenant %s: domain %q defined twice", tn, host)
			}
			dc := &DomainConfig{Stage: stage}
			src.mark(field+".domains."+host, d)
			for n2 := d.Nesting(); d.NextBlock(n2); {
				switch d.Val() {
				case "default_app":
					args := d.RemainingArgs()
					if len(args) < 1 || len(args) > 2 {
						return nil, d.ArgErr()
					}
					dc.DefaultApp = args[0]
					if len(args) == 2 {
						dc.DefaultAppMode = args[1]
					}
				case "pending":
					if d.NextArg() {
						return nil, d.ArgErr()
					}
					dc.Pending = true
				default:
					return nil, d.Errf("neo: tenant %s domain %s: unknown subdirective %q", tn, host, d.Val())
				}
			}
			tc.Domains[host] = dc
		case "rate_limit_tier":
			if tc.RateLimitTier != "" {
				return nil, d.Errf("neo: tenant %s: rate_limit_tier given twice", tn)
			}
			if !d.Args(&tc.RateLimitTier) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "identity":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if tc.Identity != nil {
				return nil, d.Errf("neo: tenant %s: identity defined twice", tn)
			}
			ic, err := parseIdentityBlock(d, tn)
			if err != nil {
				return nil, err
			}
			tc.Identity = ic
		case "waf":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if tc.WAF != nil {
				return nil, d.Errf("neo: tenant %s: waf defined twice", tn)
			}
			tc.WAF = &WAFPolicy{}
			for n2 := d.Nesting(); d.NextBlock(n2); {
				switch d.Val() {
				case "mode":
					if !d.Args(&tc.WAF.Mode) || d.NextArg() {
						return nil, d.ArgErr()
					}
				case "paranoia":
					var v string
					if !d.Args(&v) || d.NextArg() {
						return nil, d.ArgErr()
					}
					n, err := strconv.Atoi(v)
					if err != nil {
						return nil, d.Errf("neo: tenant %s waf paranoia: %q is not a number", tn, v)
					}
					tc.WAF.Paranoia = n
				case "exclude":
					e, err := parseWAFExclusion(d, tn)
					if err != nil {
						return nil, err
					}
					tc.WAF.Exclusions = append(tc.WAF.Exclusions, e)
				default:
					return nil, d.Errf("neo: tenant %s waf: unknown subdirective %q", tn, d.Val())
				}
			}
		default:
			return nil, d.Errf("neo: tenant %s: unknown subdirective %q", tn, d.Val())
		}
	}
	return tc, nil
}

// UnmarshalCaddyfile sets up the handler:
//
//	neo_route {
//	    trust_forwarded_host
//	}
func (h *RouteHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_route", func(name string) error {
		if name != "trust_forwarded_host" {
			return cfblock.Unknown(d, "neo_route", name)
		}
		h.TrustForwardedHost = true
		return cfblock.Flag(d)
	})
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*RouteHandler)(nil)
)
