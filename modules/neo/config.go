package neo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// TenantConfig is one tenant: its apps and its custom domains. It is the JSON
// shape of `apps.neo.tenants.<name>`, of a tenant in a store, and of the admin
// API's /neo/tenants/{t} resource.
type TenantConfig struct {
	// Apps by name (DNS label). Default: none.
	Apps map[string]*AppConfig `json:"apps,omitempty"`
	// Domains are the tenant's custom domains by host name. Default: none.
	Domains map[string]*DomainConfig `json:"domains,omitempty"`
	// WAF overrides the edge WAF's policy for this tenant's requests (every
	// host of the tenant: Runtime, Platform and custom domains). Default: the
	// edge's policy.
	WAF *WAFPolicy `json:"waf,omitempty"`
	// RateLimitTier names the edge's rate-limit tier for this tenant's hosts
	// (a DNS label, for example "large"): the edge's zones match tiers with
	// the `neo_rate_tier` request matcher. Default: "" (the default tier).
	RateLimitTier string `json:"rate_limit_tier,omitempty"`
	// Identity is who may sign in to the tenant's Platform and stages, and
	// its API clients (identity.go). Default: nobody.
	Identity *IdentityConfig `json:"identity,omitempty"`
}

// WAFPolicy is a tenant's WAF override. The edge keeps one compiled WAF for
// every tenant; neo_waf passes the tenant's policy to it per request (the
// edge's CRS rules 900010 to 900014 act on it), so an override costs no
// memory and no compilation.
type WAFPolicy struct {
	// Mode is "blocking" (the edge's engine setting) or "detection_only":
	// rule matches are logged with the tenant's host, nothing is blocked.
	// Default: blocking.
	Mode string `json:"mode,omitempty"`
	// Paranoia is the CRS blocking paranoia level, 1 to 4, for the tenant's
	// requests; it replaces the edge's level (NEO_WAF_PARANOIA, default 1).
	// Default: the edge's level.
	Paranoia int `json:"paranoia,omitempty"`
	// Exclusions take CRS rules off this tenant's requests (wafexclusion.go).
	// Default: none.
	Exclusions []WAFExclusion `json:"exclusions,omitempty"`
}

// WAF modes.
const (
	WAFBlocking      = "blocking"
	WAFDetectionOnly = "detection_only"
)

func (p *WAFPolicy) validate(field string) error {
	switch p.Mode {
	case "", WAFBlocking, WAFDetectionOnly:
	default:
		return fmt.Errorf("%s.mode: must be %s or %s, got %q", field, WAFBlocking, WAFDetectionOnly, p.Mode)
	}
	if p.Paranoia < 0 || p.Paranoia > 4 {
		return fmt.Errorf("%s.paranoia: want 1 to 4, got %d", field, p.Paranoia)
	}
	return validateWAFExclusions(field+".exclusions", p.Exclusions)
}

// The protocols an app's replicas speak (AppConfig.Protocol).
const (
	ProtocolH1  = "h1"
	ProtocolH2C = "h2c"
)

// AppConfig is one app of a tenant: its replicas in each stage it is deployed to.
type AppConfig struct {
	// Public apps are served to anonymous users; the others require a
	// signed-in user of the tenant and stage (the `{neo.public}` placeholder
	// tells the identity route which). Default: false (private).
	Public bool `json:"public,omitempty"`
	// Protocol is how the stage gateways speak to the app's replicas:
	// "h1" (HTTP/1.1) or "h2c" (HTTP/2 without TLS, with prior knowledge,
	// as gRPC servers listen). The `{neo.protocol}` placeholder carries it
	// to the gateway's routes (caddyfiles/stage.Caddyfile sends h2c apps
	// through a reverse_proxy with `versions h2c`). Default: "h1".
	Protocol string `json:"protocol,omitempty"`
	// Stages maps a stage name to the app's deployment in that stage. A stage
	// not listed has no deployment: requests for the app there get the generic 404.
	Stages map[string]*StageConfig `json:"stages,omitempty"`
}

// StageConfig is an app's deployment in one stage.
type StageConfig struct {
	// Replicas of the app in this stage. Default: none (the app is known but
	// has nothing to serve; the proxy answers 502/503).
	Replicas []Replica `json:"replicas,omitempty"`
}

// Replica is one upstream container: a dial address and its availability zone.
type Replica struct {
	// Address is host:port (a Caddy dial address without scheme). Required.
	Address string `json:"address"`
	// Zone is the replica's availability zone. Required, and one of the
	// registry's zones, when the registry declares zones (App.Zones);
	// otherwise it defaults to the node's zone.
	Zone string `json:"zone,omitempty"`
}

// DomainConfig is a custom domain of a tenant, bound to one stage.
type DomainConfig struct {
	// Stage the domain serves. Required.
	Stage string `json:"stage"`
	// DefaultApp is served at `/`. Default: none (`/` gets the generic 404).
	DefaultApp string `json:"default_app,omitempty"`
	// DefaultAppMode is how `/` reaches the default app: "redirect" answers
	// 301 to `/<app>/`; "rewrite" forwards the request as `/<app>/`;
	// "all" sends every path of the domain to the default app unchanged
	// (the domain is the app's: no other app is reached through it), as
	// gRPC clients need, whose paths are `/<package.Service>/<Method>`.
	// Default: redirect.
	DefaultAppMode string `json:"default_app_mode,omitempty"`
	// Pending marks a domain not yet validated (DNS): it is neither routed
	// nor given certificates. Default: false (active).
	Pending bool `json:"pending,omitempty"`
}

// ServiceConfig is a platform service shared by all tenants, reached at
// `<tenant>.<platform_domain><path>...`.
type ServiceConfig struct {
	// Path is the path prefix, beginning and ending with `/` (for example
	// `/api/build/`). The longest matching prefix wins. A request for the
	// prefix without its trailing slash matches too. Required.
	Path string `json:"path"`
	// Replicas of the service. Default: none.
	Replicas []Replica `json:"replicas,omitempty"`
}

// Limits on names. Tenant names follow the platform's organization rule;
// other names are DNS labels.
const (
	TenantMinLen = 3
	TenantMaxLen = 40
	LabelMaxLen  = 63
	MinStages    = 1
	// MaxStages is generous: the platform allows development, up to 10
	// intermediate stages and production.
	MaxStages = 32
)

// ValidLabel reports whether s is a DNS label as the registry uses them:
// lowercase letters, digits and hyphens, beginning with a letter, ending with
// a letter or digit, 1 to 63 characters.
func ValidLabel(s string) bool {
	if len(s) == 0 || len(s) > LabelMaxLen {
		return false
	}
	if s[0] < 'a' || s[0] > 'z' {
		return false
	}
	last := s[len(s)-1]
	if !(last >= 'a' && last <= 'z' || last >= '0' && last <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func checkLabel(field, s string) error {
	if !ValidLabel(s) {
		return fmt.Errorf("%s: %q is not a valid name (lowercase letters, digits and hyphens, starting with a letter, ending with a letter or digit, at most %d characters)", field, s, LabelMaxLen)
	}
	return nil
}

// CheckTenantName validates a tenant name.
func CheckTenantName(field, s string) error {
	if err := checkLabel(field, s); err != nil {
		return err
	}
	if len(s) < TenantMinLen || len(s) > TenantMaxLen {
		return fmt.Errorf("%s: tenant name %q must have %d to %d characters", field, s, TenantMinLen, TenantMaxLen)
	}
	return nil
}

// ValidHostname reports whether s is a lowercase DNS name of at least two
// labels, each a valid label (digits may start a label here), at most 253
// characters, without trailing dot.
func ValidHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) == 0 || len(l) > LabelMaxLen || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func checkReplicas(field string, rs []Replica) error {
	for i, r := range rs {
		f := fmt.Sprintf("%s[%d]", field, i)
		// A replica listed twice would take twice its share of the traffic.
		for j := range i {
			if rs[j].Address == r.Address {
				return fmt.Errorf("%s.address: %q is already %s[%d]: list each replica once", f, r.Address, field, j)
			}
		}
		host, port, err := net.SplitHostPort(r.Address)
		if err != nil || host == "" {
			return fmt.Errorf("%s.address: %q is not host:port", f, r.Address)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%s.address: %q has no valid port", f, r.Address)
		}
		if strings.ContainsAny(r.Address, "{}/ \t") {
			return fmt.Errorf("%s.address: %q must be a plain host:port", f, r.Address)
		}
		if r.Zone != "" {
			if err := checkLabel(f+".zone", r.Zone); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReservedAppName is the one app name a tenant cannot use: its path
// /identity/ belongs to the identity service (neo_signin) on every tenant
// host, and the edge's WAF trusts that service's own secrets there.
const ReservedAppName = "identity"

// Validate checks a tenant's configuration against the node's stages. field
// prefixes every error (for example `tenants.acme`).
func (t *TenantConfig) Validate(field string, stages *stageSet) error {
	if t == nil {
		return fmt.Errorf("%s: missing tenant object", field)
	}
	for _, name := range sortedKeys(t.Apps) {
		a := t.Apps[name]
		f := field + ".apps." + name
		if err := checkLabel(f, name); err != nil {
			return err
		}
		if name == ReservedAppName {
			return fmt.Errorf("%s: the app name %q is reserved: /%s/ on every tenant host is the identity service's (sign-in, tokens)", f, name, name)
		}
		if a == nil {
			return fmt.Errorf("%s: missing app object", f)
		}
		switch a.Protocol {
		case "", ProtocolH1, ProtocolH2C:
		default:
			return fmt.Errorf("%s.protocol: must be %s or %s, got %q", f, ProtocolH1, ProtocolH2C, a.Protocol)
		}
		for _, s := range sortedKeys(a.Stages) {
			sf := f + ".stages." + s
			if _, ok := stages.index[s]; !ok {
				return fmt.Errorf("%s: unknown stage %q (stages: %s)", sf, s, strings.Join(stages.names, ", "))
			}
			if a.Stages[s] == nil {
				return fmt.Errorf("%s: missing stage object", sf)
			}
			if err := checkReplicas(sf+".replicas", a.Stages[s].Replicas); err != nil {
				return err
			}
		}
	}
	if t.WAF != nil {
		if err := t.WAF.validate(field + ".waf"); err != nil {
			return err
		}
	}
	if t.RateLimitTier != "" {
		if err := checkLabel(field+".rate_limit_tier", t.RateLimitTier); err != nil {
			return err
		}
	}
	if t.Identity != nil {
		if err := t.Identity.Validate(field+".identity", stages); err != nil {
			return err
		}
	}
	for _, host := range sortedKeys(t.Domains) {
		d := t.Domains[host]
		f := field + ".domains." + host
		if err := CheckCustomDomain(host); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if d == nil {
			return fmt.Errorf("%s: missing domain object", f)
		}
		if _, ok := stages.index[d.Stage]; !ok {
			return fmt.Errorf("%s.stage: unknown stage %q (stages: %s)", f, d.Stage, strings.Join(stages.names, ", "))
		}
		if d.DefaultApp != "" {
			if _, ok := t.Apps[d.DefaultApp]; !ok {
				return fmt.Errorf("%s.default_app: tenant has no app %q", f, d.DefaultApp)
			}
		}
		switch d.DefaultAppMode {
		case "", "redirect", "rewrite":
		case "all":
			if d.DefaultApp == "" {
				return fmt.Errorf("%s.default_app_mode: all needs a default_app", f)
			}
		default:
			return fmt.Errorf("%s.default_app_mode: must be redirect, rewrite or all, got %q", f, d.DefaultAppMode)
		}
	}
	return nil
}

// Clone returns a deep copy.
func (t *TenantConfig) Clone() *TenantConfig {
	if t == nil {
		return nil
	}
	data, _ := json.Marshal(t)
	c := new(TenantConfig)
	_ = json.Unmarshal(data, c)
	return c
}

// stageSet is the node's ordered stages; the last one is production.
type stageSet struct {
	names []string
	index map[string]int
}

func newStageSet(names []string) (*stageSet, error) {
	if len(names) < MinStages {
		return nil, errors.New("stages: at least one stage (production) is required")
	}
	if len(names) > MaxStages {
		return nil, fmt.Errorf("stages: at most %d stages, got %d", MaxStages, len(names))
	}
	s := &stageSet{names: slices.Clone(names), index: make(map[string]int, len(names))}
	for i, n := range names {
		if err := checkLabel(fmt.Sprintf("stages[%d]", i), n); err != nil {
			return nil, err
		}
		if _, dup := s.index[n]; dup {
			return nil, fmt.Errorf("stages[%d]: duplicate stage %q", i, n)
		}
		s.index[n] = i
	}
	return s, nil
}

func (s *stageSet) prod() int { return len(s.names) - 1 }

// hostLabel returns the first label of the Runtime host of tenant t in stage i.
func (s *stageSet) hostLabel(t string, i int) string {
	if i == s.prod() {
		return t
	}
	return t + "-" + s.names[i]
}

// ambiguity returns a description of the tenant whose Runtime host labels
// collide with those of tenant t among the given existing tenants, or "".
// Host label `a-b` is both tenant `a-b` in production and tenant `a` in
// stage `b`; tenant and stage names may themselves contain hyphens.
func (s *stageSet) ambiguity(t string, exists func(string) bool) string {
	// t's own labels as read by another tenant: t itself, or t-stage.
	// 1. Some other tenant u, in a non-production stage st, has label u-st == t
	//    (t's production label), or u-st == t-st2 (t's stage label).
	// 2. Another tenant u == t-st (t's stage label is u's production label).
	for i := 0; i < s.prod(); i++ {
		if u := t + "-" + s.names[i]; exists(u) {
			return fmt.Sprintf("tenant %q in stage %q and tenant %q in production share the host label %q", t, s.names[i], u, u)
		}
	}
	labels := []string{t}
	for i := 0; i < s.prod(); i++ {
		labels = append(labels, t+"-"+s.names[i])
	}
	for _, l := range labels {
		for i := 0; i < s.prod(); i++ {
			suf := "-" + s.names[i]
			if u, ok := strings.CutSuffix(l, suf); ok && u != t && exists(u) {
				return fmt.Sprintf("tenant %q in stage %q and tenant %q share the host label %q", u, s.names[i], t, l)
			}
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
