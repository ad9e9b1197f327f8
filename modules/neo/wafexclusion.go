package neo

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// WAFExclusion takes CRS rules off a tenant's requests: all of them, those
// of one path, or only some arguments of them. It is applied by the edge's
// neo_waf per request, from the registry (a change through the admin API
// applies to the next request); it never reaches another tenant's requests.
type WAFExclusion struct {
	// Rules are rule ids ("942100") or inclusive ranges ("942100-942199").
	// An exclusion needs at least one rule or tag.
	Rules []string `json:"rules,omitempty"`
	// Tags select every rule carrying one of them ("attack-sqli",
	// "paranoia-level/2", "OWASP_CRS/ATTACK-XSS").
	Tags []string `json:"tags,omitempty"`
	// Path limits the exclusion to requests whose canonical path (the path
	// neo_route routes by: dot segments and empty segments removed) equals
	// it, or starts with it when it ends in "*" ("/orders/api/*"). Default:
	// every path.
	Path string `json:"path,omitempty"`
	// Args limits the exclusion to these arguments: the rules still
	// inspect everything else. A name as the WAF logs it ("q",
	// "json.user.bio"; a trailing "*" matches a prefix: "json.notes.*"),
	// or a cookie or request header as "REQUEST_COOKIES:<name>" or
	// "REQUEST_HEADERS:<name>". Default: the whole rules.
	Args []string `json:"args,omitempty"`
}

// Limits of a tenant's WAF exclusions.
const (
	MaxWAFExclusions       = 64 // per tenant
	MaxWAFExclusionEntries = 64 // rules, tags or args per exclusion
)

func (e *WAFExclusion) validate(field string) error {
	if len(e.Rules)+len(e.Tags) == 0 {
		return fmt.Errorf("%s: needs at least one rule or tag", field)
	}
	if len(e.Rules) > MaxWAFExclusionEntries || len(e.Tags) > MaxWAFExclusionEntries || len(e.Args) > MaxWAFExclusionEntries {
		return fmt.Errorf("%s: at most %d rules, tags and args each", field, MaxWAFExclusionEntries)
	}
	for i, r := range e.Rules {
		if _, _, ok := ParseRuleRange(r); !ok {
			return fmt.Errorf("%s.rules[%d]: %q is not a rule id or an id range (942100, 942100-942199)", field, i, r)
		}
	}
	for i, t := range e.Tags {
		if !printableToken(t) {
			return fmt.Errorf("%s.tags[%d]: %q is not a tag (printable, no spaces)", field, i, t)
		}
	}
	if e.Path != "" {
		p := strings.TrimSuffix(e.Path, "*")
		if !strings.HasPrefix(e.Path, "/") || strings.Contains(p, "*") || !printableToken(e.Path) {
			return fmt.Errorf("%s.path: %q must start with / and may end in * (no other *, no spaces)", field, e.Path)
		}
	}
	for i, a := range e.Args {
		name := a
		if col, rest, ok := strings.Cut(a, ":"); ok && (col == "REQUEST_COOKIES" || col == "REQUEST_HEADERS") {
			name = rest
		}
		if name == "" || name == "*" || strings.Contains(strings.TrimSuffix(name, "*"), "*") || !printableToken(a) {
			return fmt.Errorf("%s.args[%d]: %q is not an argument name (may end in *), REQUEST_COOKIES:<name> or REQUEST_HEADERS:<name>", field, i, a)
		}
	}
	return nil
}

// ParseRuleRange reads a rule id ("942100") or an inclusive range
// ("942100-942199") of positive ids.
func ParseRuleRange(s string) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil || lo < 1 || a != strconv.Itoa(lo) {
		return 0, 0, false
	}
	if !isRange {
		return lo, lo, true
	}
	hi, err = strconv.Atoi(b)
	if err != nil || hi < lo || b != strconv.Itoa(hi) {
		return 0, 0, false
	}
	return lo, hi, true
}

// MatchPath reports whether the exclusion applies to a request with the
// canonical path p.
func (e *WAFExclusion) MatchPath(p string) bool {
	if e.Path == "" {
		return true
	}
	if pre, ok := strings.CutSuffix(e.Path, "*"); ok {
		return strings.HasPrefix(p, pre)
	}
	return p == e.Path
}

func printableToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validateWAFExclusions(field string, ex []WAFExclusion) error {
	if len(ex) > MaxWAFExclusions {
		return fmt.Errorf("%s: at most %d exclusions per tenant, got %d", field, MaxWAFExclusions, len(ex))
	}
	for i := range ex {
		if err := ex[i].validate(fmt.Sprintf("%s[%d]", field, i)); err != nil {
			return err
		}
	}
	return nil
}

// parseWAFExclusion reads, inside a tenant's waf block:
//
//	exclude <rule id|range|tag:<tag>>... [{
//	    path <path>
//	    args <name>...
//	}]
func parseWAFExclusion(d *caddyfile.Dispenser, tn string) (WAFExclusion, error) {
	var e WAFExclusion
	for d.NextArg() {
		if t, ok := strings.CutPrefix(d.Val(), "tag:"); ok {
			e.Tags = append(e.Tags, t)
		} else {
			e.Rules = append(e.Rules, d.Val())
		}
	}
	for n := d.Nesting(); d.NextBlock(n); {
		switch d.Val() {
		case "path":
			if e.Path != "" {
				return e, d.Errf("neo: tenant %s waf exclude: path given twice", tn)
			}
			if !d.Args(&e.Path) || d.NextArg() {
				return e, d.ArgErr()
			}
		case "args":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return e, d.ArgErr()
			}
			e.Args = append(e.Args, args...)
		default:
			return e, d.Errf("neo: tenant %s waf exclude: unknown subdirective %q", tn, d.Val())
		}
	}
	if err := e.validate("exclude"); err != nil {
		return e, d.Errf("neo: tenant %s waf %v", tn, err)
	}
	return e, nil
}
