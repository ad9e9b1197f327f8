package wafaccel

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// Per-request rule exclusions (a tenant's `waf { exclude ... }`): the
// Coraza action neoExclude removes rules from the transaction, or targets
// from rules, as ctl:ruleRemoveById / ctl:ruleRemoveTargetById do. The
// exclusions come from the program (the edge's neo_waf registers each
// tenant's set and names it in the request header ExclusionHeader, after
// removing whatever a client sent there); the action reads the header at
// the start of phase 1. It goes before the neoSkip rules:
//
//	SecAction "id:900965,phase:1,pass,nolog,neoExclude"
//
// Rule skipping knows which rules the exclusions removed, so it keeps the
// skip:N windows exact with them too (flow.go). Tags are resolved against
// the WAF's rules as neoRuleInfo saw them, so the action needs the
// SkipDirectivesAfter directive (and its range must cover the rules).

// ExclusionHeader carries "<set>.<mask>" from neo_waf to the WAF: the
// registered set's number and, as a decimal bit mask, which of its
// exclusions apply to this request (those of its path).
const ExclusionHeader = "Neo-Waf-Exclusions"

// Exclusion is one exclusion: the rules (id ranges, tags) and, when Args is
// not empty, only these targets of them ("name", "prefix*",
// "REQUEST_COOKIES:name", "REQUEST_HEADERS:name").
type Exclusion struct {
	Ranges [][2]int
	Tags   []string
	Args   []string
}

// ExclusionSet is a list of at most 64 exclusions.
type ExclusionSet struct {
	List []Exclusion

	args [][]targetSel // per exclusion, compiled
}

type targetSel struct {
	vars []variables.RuleVariable
	key  string
	rx   *regexp.Regexp
}

var (
	argVars    = []variables.RuleVariable{variables.Args, variables.ArgsGet, variables.ArgsPost, variables.ArgsNames, variables.ArgsGetNames, variables.ArgsPostNames}
	cookieVars = []variables.RuleVariable{variables.RequestCookies, variables.RequestCookiesNames}
	headerVars = []variables.RuleVariable{variables.RequestHeaders, variables.RequestHeadersNames}
)

func compileTarget(a string) targetSel {
	sel := targetSel{vars: argVars}
	switch {
	case strings.HasPrefix(a, "REQUEST_COOKIES:"):
		sel.vars, a = cookieVars, strings.TrimPrefix(a, "REQUEST_COOKIES:")
	case strings.HasPrefix(a, "REQUEST_HEADERS:"):
		sel.vars, a = headerVars, strings.TrimPrefix(a, "REQUEST_HEADERS:")
	}
	// Coraza compares exclusions with the lowercased key.
	a = strings.ToLower(a)
	if pre, ok := strings.CutSuffix(a, "*"); ok {
		sel.rx = regexp.MustCompile("^" + regexp.QuoteMeta(pre))
	} else {
		sel.key = a
	}
	return sel
}

var exclusionSets struct {
	next atomic.Uint64
	m    sync.Map // uint64 -> *ExclusionSet
}

// RegisterExclusions makes s usable in transactions and returns its number
// (never reused). The program must not change s afterwards.
func RegisterExclusions(s *ExclusionSet) uint64 {
	s.args = make([][]targetSel, len(s.List))
	for i, e := range s.List {
		for _, a := range e.Args {
			s.args[i] = append(s.args[i], compileTarget(a))
		}
	}
	n := exclusionSets.next.Add(1)
	exclusionSets.m.Store(n, s)
	return n
}

// UnregisterExclusions forgets a set; transactions naming it then apply no
// exclusion.
func UnregisterExclusions(n uint64) { exclusionSets.m.Delete(n) }

// ExclusionHeaderValue is the header value naming set n and the
// exclusions of mask.
func ExclusionHeaderValue(n, mask uint64) string {
	return strconv.FormatUint(n, 10) + "." + strconv.FormatUint(mask, 10)
}

// txExclusions returns the set, its number and the mask named by the
// transaction's header; nil when there is none (or it names no registered
// set).
func txExclusions(tx plugintypes.TransactionState) (*ExclusionSet, uint64, uint64) {
	col, ok := tx.Collection(variables.RequestHeaders).(collection.Keyed)
	if !ok {
		return nil, 0, 0
	}
	vals := col.Get("neo-waf-exclusions")
	if len(vals) != 1 {
		return nil, 0, 0
	}
	a, b, ok := strings.Cut(vals[0], ".")
	if !ok {
		return nil, 0, 0
	}
	n, err1 := strconv.ParseUint(a, 10, 64)
	mask, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || mask == 0 {
		return nil, 0, 0
	}
	s, ok := exclusionSets.m.Load(n)
	if !ok {
		return nil, 0, 0
	}
	return s.(*ExclusionSet), n, mask
}

// resolved is a set's rules in one WAF: per exclusion, the sorted ids.
type resolved [][]int

// resolve returns the set's rule ids among the WAF's rules (cached per
// WAF; the cache is bounded and starts over when full).
func (f *flowSeq) resolve(n uint64, s *ExclusionSet) resolved {
	if v, ok := f.resolved.Load(n); ok {
		return v.(resolved)
	}
	r := make(resolved, len(s.List))
	for i, e := range s.List {
		for _, fe := range f.entries {
			if fe.id == 0 || fe.table != nil {
				continue
			}
			hit := false
			for _, rg := range e.Ranges {
				hit = hit || fe.id >= rg[0] && fe.id <= rg[1]
			}
			for _, t := range e.Tags {
				hit = hit || slices.Contains(fe.tags, t)
			}
			if hit {
				r[i] = append(r[i], fe.id)
			}
		}
		slices.Sort(r[i])
		r[i] = slices.Compact(r[i])
	}
	if f.nResolved.Add(1) > maxResolved {
		f.resolved.Clear()
		f.nResolved.Store(0)
	}
	f.resolved.Store(n, r)
	return r
}

const maxResolved = 4096

// removedBy returns whether id is removed whole by the exclusions of mask.
func (r resolved) removedBy(s *ExclusionSet, mask uint64) func(id int) bool {
	return func(id int) bool {
		for i := range r {
			if mask&(1<<i) == 0 || len(s.List[i].Args) > 0 {
				continue
			}
			if _, ok := slices.BinarySearch(r[i], id); ok {
				return true
			}
		}
		return false
	}
}

type targetRemover interface {
	RemoveRuleTargetByID(id int, variable variables.RuleVariable, key string, keyRx *regexp.Regexp)
}

// excludeAction is the neoExclude action.
type excludeAction struct {
	flow atomic.Pointer[flowSeq]
}

func init() {
	plugins.RegisterAction("neoexclude", func() plugintypes.Action { return &excludeAction{} })
}

func (*excludeAction) Type() plugintypes.ActionType                { return plugintypes.ActionTypeNondisruptive }
func (*excludeAction) Init(plugintypes.RuleMetadata, string) error { return nil }

func (a *excludeAction) Evaluate(r plugintypes.RuleMetadata, tx plugintypes.TransactionState) {
	s, n, mask := txExclusions(tx)
	if s == nil {
		return
	}
	f := a.flow.Load()
	if f == nil {
		v, ok := pendingExclude.LoadAndDelete(r)
		if !ok {
			return // no neoRuleInfo saw this rule: the rules are unknown
		}
		f = v.(*flowSeq)
		a.flow.Store(f)
	}
	rm, ok1 := tx.(ruleRemover)
	trm, ok2 := tx.(targetRemover)
	if !ok1 || !ok2 {
		return
	}
	res := f.resolve(n, s)
	for i, ids := range res {
		if mask&(1<<i) == 0 {
			continue
		}
		if len(s.args[i]) == 0 {
			for _, id := range ids {
				rm.RemoveRuleByID(id)
			}
			continue
		}
		for _, id := range ids {
			for _, sel := range s.args[i] {
				for _, v := range sel.vars {
					trm.RemoveRuleTargetByID(id, v, sel.key, sel.rx)
				}
			}
		}
	}
}

// pendingExclude maps a neoExclude rule to its WAF's rules, from
// neoRuleInfo's initialisation to the rule's first evaluation.
var pendingExclude sync.Map // plugintypes.RuleMetadata -> *flowSeq

// Interface guards
var _ plugintypes.Action = (*excludeAction)(nil)
