package wafaccel

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// Per-transaction rule skipping (the literal prefilter one level up; see
// docs/wafaccel-skip.md). Two actions, configured with ordinary directives:
//
//	SecAction "id:900970,phase:1,pass,nolog,neoSkip"   # before the CRS
//	SecAction "id:900971,phase:2,pass,nolog,neoSkip"
//	Include @owasp_crs/*.conf
//	SecRuleUpdateActionById 900970-999999 "neoRuleInfo" # after every rule
//
// neoRuleInfo is a metadata action: Coraza initialises it with every rule of
// the range, in rule order, and does not attach it to any rule (metadata
// actions are only initialised), so it costs nothing per request. From each
// rule's own text it learns the candidates: non-negated @rx chain heads whose
// targets are request collections and whose transformations are understood.
// neoSkip, run by its SecAction at the start of its phase, collects each
// candidate's target values once, and removes from the transaction
// (Transaction.RemoveRuleByID, what ctl:ruleRemoveById does) every candidate
// whose prefilter no value can satisfy: such a rule cannot match.

func init() {
	plugins.RegisterAction("neoskip", func() plugintypes.Action { return &skipAction{} })
	plugins.RegisterAction("neoruleinfo", func() plugintypes.Action { return &ruleInfoAction{} })
}

// SkipDirectivesBefore and SkipDirectivesAfter set up rule skipping in a
// Coraza configuration: the first goes after the CRS setup and before the
// CRS rules, the second after every rule and every rule update directive.
const (
	SkipDirectivesBefore = `SecAction "id:900970,phase:1,pass,nolog,neoSkip"
SecAction "id:900971,phase:2,pass,nolog,neoSkip"
`
	SkipDirectivesAfter = `SecRuleUpdateActionById 900970-999999 "neoRuleInfo"
`
)

// maxGroupText bounds the data a group of targets is scanned over; beyond it
// the group's rules are left to Coraza (the scan would cost about as much as
// the evaluations it saves).
const maxGroupText = 64 << 10

// skipTable is what one neoSkip rule decides on: the candidates of its phase
// that follow it, grouped by their set of target collections.
type skipTable struct {
	phase  types.RulePhase
	groups []*skipGroup
	byKey  map[string]*skipGroup
	n      int
}

type skipGroup struct {
	vars  []variables.RuleVariable
	cands []skipCand
}

// skipCand is a rule that can be skipped when its prefilter rejects every
// value of its targets after its transformations.
type skipCand struct {
	id     int
	pf     *prefilter
	active byteSet // bytes some transformation of the chain may act on
	lower  bool    // the chain lowercases (t:lowercase)
	multi  bool    // multiMatch: the untransformed value is evaluated too
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (b *byteSet) add(c byte)               { b[c>>6] |= 1 << (c & 63) }
func (b byteSet) has(c byte) bool           { return b[c>>6]&(1<<(c&63)) != 0 }
func (b byteSet) intersects(o byteSet) bool { return b[0]&o[0]|b[1]&o[1]|b[2]&o[2]|b[3]&o[3] != 0 }

// pending maps a neoSkip rule (as Coraza passes it to Evaluate: the rule in
// the WAF's rule group) to its table, from neoRuleInfo's initialisation to
// the first evaluation of that rule, when the skip action takes it over.
var pending sync.Map // plugintypes.RuleMetadata -> *skipTable

var (
	skipCalls   atomic.Uint64 // candidate rule decisions (test statistics)
	skipRemoved atomic.Uint64 // of which removed
)

// ruleInfoAction is the neoRuleInfo metadata action. One instance serves a
// whole SecRuleUpdateActionById directive: Coraza parses the action list
// once and initialises it with every rule of the range in rule order.
type ruleInfoAction struct {
	tables []*skipTable
}

func (*ruleInfoAction) Type() plugintypes.ActionType { return plugintypes.ActionTypeMetadata }

func (*ruleInfoAction) Evaluate(plugintypes.RuleMetadata, plugintypes.TransactionState) {}

func (a *ruleInfoAction) Init(r plugintypes.RuleMetadata, _ string) error {
	md, ok := r.(types.RuleMetadata)
	if !ok {
		return nil
	}
	raw := md.Raw()
	if isSkipRule(raw) {
		t := &skipTable{phase: md.Phase(), byKey: map[string]*skipGroup{}}
		a.tables = append(a.tables, t)
		pending.Store(r, t)
		return nil
	}
	var live []*skipTable
	for _, t := range a.tables {
		if t.phase == md.Phase() {
			live = append(live, t)
		}
	}
	if len(live) == 0 {
		return nil
	}
	info, ok := parseRuleText(raw)
	if !ok || info.id != md.ID() {
		return nil
	}
	c, vars, ok := info.candidate()
	if !ok {
		return nil
	}
	for _, t := range live {
		t.add(vars, c)
	}
	return nil
}

func (t *skipTable) add(vars []variables.RuleVariable, c skipCand) {
	var key strings.Builder
	for _, v := range vars {
		key.WriteString(v.Name())
		key.WriteByte('|')
	}
	g := t.byKey[key.String()]
	if g == nil {
		g = &skipGroup{vars: vars}
		t.byKey[key.String()] = g
		t.groups = append(t.groups, g)
	}
	g.cands = append(g.cands, c)
	t.n++
}

// isSkipRule reports whether a rule's text carries the neoSkip action.
func isSkipRule(raw string) bool {
	name, rest, _ := strings.Cut(strings.TrimSpace(raw), " ")
	if !strings.EqualFold(name, "SecAction") {
		return false
	}
	acts, _, ok := cutQuoted(strings.TrimSpace(rest))
	if !ok {
		return false
	}
	for _, a := range splitActions(acts[1 : len(acts)-1]) {
		if strings.EqualFold(strings.TrimSpace(a), "neoSkip") {
			return true
		}
	}
	return false
}

// skipAction is the neoSkip action.
type skipAction struct {
	table atomic.Pointer[skipTable]
}

func (*skipAction) Type() plugintypes.ActionType { return plugintypes.ActionTypeNondisruptive }

func (*skipAction) Init(plugintypes.RuleMetadata, string) error { return nil }

type ruleRemover interface{ RemoveRuleByID(id int) }

func (a *skipAction) Evaluate(r plugintypes.RuleMetadata, tx plugintypes.TransactionState) {
	if !skipEnabled || !enabled.Load() {
		return
	}
	t := a.table.Load()
	if t == nil {
		v, ok := pending.LoadAndDelete(r)
		if !ok {
			return // no neoRuleInfo saw this rule: nothing is skipped
		}
		t = v.(*skipTable)
		a.table.Store(t)
	}
	rm, ok := tx.(ruleRemover)
	if !ok || tx.LastPhase() != t.phase {
		return
	}
	var buf []byte
	for _, g := range t.groups {
		var present byteSet
		buf = buf[:0]
		too := false
		for _, v := range g.vars {
			col := tx.Collection(v)
			if col == nil {
				continue
			}
			for _, md := range col.FindAll() {
				s := md.Value()
				for i := 0; i < len(s); i++ {
					present.add(s[i])
				}
				buf = append(buf, s...)
				buf = append(buf, 0)
				if len(buf) > maxGroupText {
					too = true
					break
				}
			}
			if too {
				break
			}
		}
		if too {
			continue
		}
		text := string(buf)
		lower := ""
		for i := range g.cands {
			c := &g.cands[i]
			if c.active.intersects(present) {
				continue
			}
			if countStats {
				skipCalls.Add(1)
			}
			if c.lower {
				if lower == "" {
					lower = asciiLower(text)
				}
				if c.pf.mayMatch(lower) || c.multi && c.pf.mayMatch(text) {
					continue
				}
			} else if c.pf.mayMatch(text) {
				continue
			}
			if countStats {
				skipRemoved.Add(1)
			}
			rm.RemoveRuleByID(c.id)
		}
	}
}

// Interface guards
var (
	_ plugintypes.Action = (*skipAction)(nil)
	_ plugintypes.Action = (*ruleInfoAction)(nil)
)
