package edgewaf

import (
	"net/http"
	"runtime"
	"sync"
	"weak"

	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/modules/neo"
	"github.com/projectneo/caddy-neo/modules/wafaccel"
)

// A tenant's WAF exclusions (neo.WAFExclusion, from the tenant file or the
// admin API) reach the one shared WAF per request: each tenant policy's
// exclusions are registered once with wafaccel as a numbered set (compiled,
// logged with the tenant), and the request carries the set's number and
// the exclusions whose path matches the request's canonical path in the
// header Neo-Waf-Exclusions, which the edge's neoExclude rule reads. A
// client cannot name a set: the header is removed before the tenant's is
// set, and a tenant's requests only ever carry the tenant's own set. The
// registration lives as long as the policy (it is dropped when the
// registry no longer holds the policy and it is collected), so a change
// through the admin API applies to the next request, without a reload.

// exclusionSets maps a tenant's policy to its registered set's number.
var exclusionSets sync.Map // weak.Pointer[neo.WAFPolicy] -> uint64

// exclusionSet returns the number of p's registered exclusion set,
// registering it on first use.
func (h Handler) exclusionSet(tenant string, p *neo.WAFPolicy) uint64 {
	wp := weak.Make(p)
	if v, ok := exclusionSets.Load(wp); ok {
		return v.(uint64)
	}
	set := &wafaccel.ExclusionSet{}
	for _, e := range p.Exclusions {
		we := wafaccel.Exclusion{Tags: e.Tags, Args: e.Args}
		for _, r := range e.Rules {
			lo, hi, _ := neo.ParseRuleRange(r) // validated by the registry
			we.Ranges = append(we.Ranges, [2]int{lo, hi})
		}
		set.List = append(set.List, we)
	}
	n := wafaccel.RegisterExclusions(set)
	if v, loaded := exclusionSets.LoadOrStore(wp, n); loaded {
		wafaccel.UnregisterExclusions(n)
		return v.(uint64)
	}
	runtime.AddCleanup(p, func(n uint64) {
		wafaccel.UnregisterExclusions(n)
		exclusionSets.Delete(wp)
	}, n)
	if h.logger != nil {
		h.logger.Info("waf exclusions in force", zap.String("tenant", tenant), zap.Uint64("set", n), zap.Any("exclusions", p.Exclusions))
	}
	return n
}

// setExclusions names in the request the tenant's exclusions that apply to
// its path.
func (h Handler) setExclusions(r *http.Request, tenant string, p *neo.WAFPolicy) {
	var mask uint64
	path, pathOK := "", false
	for i := range p.Exclusions {
		e := &p.Exclusions[i]
		if e.Path != "" && !pathOK && path == "" {
			path, _, pathOK = neo.CanonicalPath(r)
			if !pathOK {
				path = "\x00" // not routable: path-scoped exclusions do not apply
			}
		}
		if e.Path == "" || pathOK && e.MatchPath(path) {
			mask |= 1 << i
		}
	}
	if mask == 0 {
		return
	}
	n := h.exclusionSet(tenant, p)
	r.Header[HeaderExclusions] = []string{wafaccel.ExclusionHeaderValue(n, mask)}
	if h.logger != nil {
		if ce := h.logger.Check(zap.DebugLevel, "waf exclusions applied"); ce != nil {
			if path == "" {
				path = r.URL.Path
			}
			ce.Write(zap.String("tenant", tenant), zap.String("path", path), zap.Uint64("set", n), zap.Uint64("mask", mask))
		}
	}
}
