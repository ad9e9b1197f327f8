package wafaccel

import (
	"slices"
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
// rule's own text it learns the candidates: non-negated @rx, @pm,
// @pmFromFile, @pmf and @validateByteRange chain heads whose targets are
// request collections and whose transformations are understood. neoSkip, run
// by its SecAction at the start of its phase, reads each target collection's
// values once, and removes from the transaction
// (Transaction.RemoveRuleByID, what ctl:ruleRemoveById does) every candidate
// that no value can match (prefilter unsatisfied, no phrase present, every
// byte accepted): such a rule cannot match.

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
SecAction "id:900972,phase:3,pass,nolog,neoSkip"
SecAction "id:900973,phase:4,pass,nolog,neoSkip"
SecAction "id:900974,phase:5,pass,nolog,neoSkip"
`
	SkipDirectivesAfter = `SecRuleUpdateActionById 1-2147483647 "neoRuleInfo"
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
	slots  map[string]int // chain prefix keys, numbered
	// flow is every rule neoRuleInfo saw, pos this table's neoSkip rule
	// among them (flow.go: skip:N windows are never touched).
	flow *flowSeq
	pos  int
	// txPending: comparisons of TX variables, candidates if settled
	// (txcand.go)
	txPending []skipCand
	tableIndex
}

type skipGroup struct {
	vars  []variables.RuleVariable
	cands []skipCand
}

// skipCand is a rule that can be skipped when its prefilter rejects every
// value of its targets after its transformations.
type skipCand struct {
	id int
	pf *prefilter // @rx: the pattern's prefilter
	pm *phraseSet // @pm, @pmFromFile: the phrase list (pf is nil)
	// valid: @validateByteRange: the bytes it accepts (pf and pm are nil)
	valid *byteSet
	steps []step   // the transformation chain after t:none
	keys  []string // keys[i]: the chain up to and including steps[i]
	slots []int    // slots[i]: keys[i] numbered within the table
	multi bool     // multiMatch: every intermediate value is evaluated too
	tx    *txCond  // a comparison of a settled TX variable (all else is nil)
}

// step is one transformation of a candidate's chain. Either the
// transformation leaves its input unchanged when none of the active bytes
// occurs (and, when dot is set, no value is exactly "."), or own is an exact
// implementation of it on ASCII input (on any input with anyBytes) in which
// none of the active bytes occurs.
type step struct {
	active byteSet
	dot    bool
	// tail: also active when some value ends with '.' or ' '.
	tail bool
	own  func(string) string
	// anyBytes: own is exact on any input, not only on ASCII.
	anyBytes bool
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
	// skipRemovedPM: of which @pm / @pmFromFile rules
	skipRemovedPM atomic.Uint64
)

// ruleInfoAction is the neoRuleInfo metadata action. One instance serves a
// whole SecRuleUpdateActionById directive: Coraza parses the action list
// once and initialises it with every rule of the range in rule order.
type ruleInfoAction struct {
	tables []*skipTable
	flow   flowSeq
}

func (*ruleInfoAction) Type() plugintypes.ActionType { return plugintypes.ActionTypeMetadata }

func (*ruleInfoAction) Evaluate(plugintypes.RuleMetadata, plugintypes.TransactionState) {}

func (a *ruleInfoAction) Init(r plugintypes.RuleMetadata, _ string) error {
	md, ok := r.(types.RuleMetadata)
	if !ok {
		return nil
	}
	raw := md.Raw()
	e := flowEntry{id: md.ID(), phase: md.Phase(), tags: md.Tags()}
	if isActionRule(raw, "neoExclude") {
		pendingExclude.Store(r, &a.flow)
	}
	if isSkipRule(raw) {
		t := &skipTable{phase: md.Phase(), byKey: map[string]*skipGroup{}, flow: &a.flow, pos: len(a.flow.entries)}
		e.table = t
		a.flow.entries = append(a.flow.entries, e)
		a.tables = append(a.tables, t)
		pending.Store(r, t)
		return nil
	}
	readFlow(raw, &e)
	a.flow.entries = append(a.flow.entries, e)
	a.flow.removals = append(a.flow.removals, e.removes...)
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
		// A comparison of a TX variable set in an earlier phase
		// (txcand.go); whether it is settled is known once every rule
		// was seen.
		if cond, isTX := info.txCandidate(); isTX && txCandidatesOn && md.Phase() >= 2 && !strings.Contains(raw, "\n") {
			for _, t := range live {
				t.txPending = append(t.txPending, skipCand{id: info.id, tx: cond})
			}
		}
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
	if t.slots == nil {
		t.slots = map[string]int{}
	}
	c.slots = make([]int, len(c.keys))
	for i, k := range c.keys {
		n, ok := t.slots[k]
		if !ok {
			n = len(t.slots)
			t.slots[k] = n
		}
		c.slots[i] = n
	}
	g.cands = append(g.cands, c)
	t.n++
}

// isSkipRule reports whether a rule's text carries the neoSkip action.
func isSkipRule(raw string) bool { return isActionRule(raw, "neoSkip") }

// isActionRule reports whether a SecAction's text carries the action.
func isActionRule(raw, action string) bool {
	name, rest, _ := strings.Cut(strings.TrimSpace(raw), " ")
	if !strings.EqualFold(name, "SecAction") {
		return false
	}
	acts, _, ok := cutQuoted(strings.TrimSpace(rest))
	if !ok {
		return false
	}
	for _, a := range splitActions(acts[1 : len(acts)-1]) {
		if strings.EqualFold(strings.TrimSpace(a), action) {
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
	t.finalize()
	// Each collection a candidate targets is read once: its values, each
	// followed by a NUL (a literal found across a boundary only makes the
	// check more permissive). A candidate is decided collection by
	// collection: it cannot match when no value of any of its collections
	// can (which is also more precise than checking their values joined
	// together), and the stages of a collection's text along
	// transformation chains are shared by every candidate. What a
	// collection's text allows is a function of the text alone, so it is
	// kept in the verdict cache (verdicts.go) for the next transaction with
	// the same text.
	var idxs []*textIndex
	defer func() {
		for _, x := range idxs {
			x.reset()
			indexPool.Put(x)
		}
	}()
	var keepArr [8]uint64 // up to 512 candidates without allocating
	var keep []uint64
	if t.words <= len(keepArr) {
		keep = keepArr[:t.words]
	} else {
		keep = make([]uint64, t.words)
	}
	buf := keyPool.Get().(*[]byte)
	for i := range t.vars {
		sv := &t.vars[i]
		b := append((*buf)[:0], t.keyHead[:]...)
		b = append(b, byte(i), byte(i>>8))
		nul, ok := false, true
		if col := tx.Collection(sv.v); col != nil {
			// In a set order: Coraza's collections are maps, so their
			// order changes from one transaction to the next, and the
			// cache key must not.
			mds := col.FindAll()
			if len(mds) > 1 {
				slices.SortFunc(mds, func(x, y types.MatchData) int { return strings.Compare(x.Value(), y.Value()) })
			}
			for _, md := range mds {
				val := md.Value()
				nul = nul || strings.IndexByte(val, 0) >= 0
				b = append(b, val...)
				b = append(b, 0)
				if len(b)-keyHeadLen > maxGroupText {
					ok = false
					break
				}
			}
		}
		switch {
		case !ok:
			orInto(keep, sv.mask) // too large to scan: every candidate stays
		case len(b) == keyHeadLen:
			// no value: nothing here can match
		default:
			b = append(b, boolByte(nul))
			orInto(keep, t.verdict(sv, b, nul, &idxs))
		}
		*buf = b // keep the grown buffer for the next collection
	}
	keyPool.Put(buf)
	if len(t.txCands) > 0 {
		var v txValues
		ok := t.txSlots.read(tx, &v)
		for _, n := range t.txCands {
			if !ok || t.all[n].tx.mayMatchWith(&v) {
				keep[n>>6] |= 1 << (n & 63)
			}
		}
	}
	// Never a rule that may lie in a skip:N window (flow.go), with the
	// rules this transaction's exclusions removed (exclude.go).
	if s, n, mask := txExclusions(tx); s != nil {
		orInto(keep, t.protectedMask(t.flow.resolve(n, s).removedBy(s, mask)))
	} else {
		orInto(keep, t.protected)
	}
	for n, c := range t.all {
		if countStats {
			skipCalls.Add(1)
		}
		if keep[n>>6]&(1<<(n&63)) != 0 {
			continue
		}
		if countStats {
			skipRemoved.Add(1)
			if c.pm != nil {
				skipRemovedPM.Add(1)
			}
		}
		if onRemove != nil {
			onRemove(c.id)
		}
		rm.RemoveRuleByID(c.id)
	}
}

// txCandidatesOn: TX comparisons are candidates (off only in the side-by-side
// benchmark, for WAFs built while it is off).
var txCandidatesOn = true

// onRemove, when set (tests only, no transaction running concurrently),
// sees every rule skipping removes.
var onRemove func(id int)

// colState is one collection's values in a transaction: the joined text,
// and its stages along the transformation chain prefixes candidates use.
type colState struct {
	ok      bool // small enough to be scanned
	nul     bool // a value holds a NUL
	base    stage
	derived []slotStage // by chain prefix (skipCand.slots); a few at most
}

type slotStage struct {
	slot int
	st   stage
}

// mayMatchValues reports whether the candidate may match some value of the
// collection (true when it cannot tell).
func (c *skipCand) mayMatchValues(cs *colState, idxs *[]*textIndex) bool {
	st := cs.base
	if c.multi && c.mayMatch(st) {
		return true
	}
	for k := range c.steps {
		sp := &c.steps[k]
		if sp.own == nil {
			if sp.active.intersects(st.present) || sp.dot && st.dot || sp.tail && st.tail {
				return true // the transformation may change the values
			}
			continue
		}
		if !sp.anyBytes && st.present.intersects(highBytes) || sp.active.intersects(st.present) {
			return true
		}
		slot, found := c.slots[k], false
		for i := range cs.derived {
			if cs.derived[i].slot == slot {
				st, found = cs.derived[i].st, true
				break
			}
		}
		if !found {
			// A transformation that changes nothing keeps the stage (and
			// its index).
			if out := sp.own(st.text); out != st.text {
				st = newStage(out, cs.nul, idxs)
			}
			cs.derived = append(cs.derived, slotStage{slot, st})
		}
		if c.multi && c.mayMatch(st) {
			return true
		}
	}
	if !c.mayMatch(st) {
		return false
	}
	// The joined text may satisfy the clauses where no single value does
	// (clauses met by different values, or a literal holding a NUL). When
	// no value holds a NUL, the NULs are exactly the value boundaries:
	// check value by value.
	return c.pf == nil || cs.nul || c.multi || !noValueMayMatch(c.pf, st.text)
}

// mayMatch reports whether some value of st may match the candidate's
// operator: the prefilter (or a phrase) is satisfied by the joined values.
func (c *skipCand) mayMatch(st stage) bool {
	if c.pm != nil {
		return c.pm.found(st.text, st.idx)
	}
	if c.valid != nil {
		// It matches a value holding a byte it does not accept.
		v := c.valid
		return st.present[0]&^v[0]|st.present[1]&^v[1]|st.present[2]&^v[2]|st.present[3]&^v[3] != 0
	}
	return c.pf.mayMatchIn(st.text, st.alpha, st.idx)
}

// noValueMayMatch reports whether the prefilter rejects every NUL-terminated
// value of text.
func noValueMayMatch(pf *prefilter, text string) bool {
	for text != "" {
		i := strings.IndexByte(text, 0)
		if i < 0 {
			i = len(text)
		}
		if pf.mayMatch(text[:i]) {
			return false
		}
		text = text[min(i+1, len(text)):]
	}
	return true
}

// stage is the targets' values, each followed by a NUL, after a prefix of a
// transformation chain.
type stage struct {
	text    string
	present byteSet // the bytes that occur in the values
	dot     bool    // some value is exactly "."
	tail    bool    // some value ends with '.' or ' ' (or a value holds a NUL)
	alpha   int     // the smallest alphabet holding present (see alphabet.go)
	idx     *textIndex
}

// newStage describes text; nul tells whether a value holds a NUL (the own
// transformations neither add nor remove NULs).
func newStage(text string, nul bool, idxs *[]*textIndex) stage {
	st := stage{text: text}
	var x *textIndex
	if len(text) >= minIndexed {
		x = indexPool.Get().(*textIndex)
		*idxs = append(*idxs, x)
		st.idx = x
	}
	// One pass: the bytes present, the bigram index, values that are "."
	// and values ending in '.' or ' ' (every value is followed by a NUL).
	var present byteSet
	var p1, p2 byte = 0, 0 // the two previous bytes (a NUL before the first value)
	var lp byte            // the previous byte lowercased
	for i := 0; i < len(text); i++ {
		c := text[i]
		present[c>>6] |= 1 << (c & 63)
		if c == 0 {
			switch p1 {
			case '.':
				st.tail = true
				if p2 == 0 && i > 0 {
					st.dot = true
				}
			case ' ':
				st.tail = true
			}
		}
		if x != nil {
			l := lowerByte(c)
			x.bytes[l>>6] |= 1 << (l & 63)
			if i > 0 {
				k := pairSlot(uint16(lp)<<8 | uint16(l))
				x.pairs[k>>6] |= 1 << (k & 63)
			}
			lp = l
		}
		p2, p1 = p1, c
	}
	present[0] &^= 1
	if nul {
		present.add(0)
		st.tail = true
	}
	st.present = present
	st.alpha = setAlphabet(st.present)
	return st
}

var highBytes = func() byteSet {
	var b byteSet
	for c := 0x80; c <= 0xFF; c++ {
		b.add(byte(c))
	}
	return b
}()

// Interface guards
var (
	_ plugintypes.Action = (*skipAction)(nil)
	_ plugintypes.Action = (*ruleInfoAction)(nil)
)
