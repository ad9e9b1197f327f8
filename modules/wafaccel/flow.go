package wafaccel

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/types"
)

// Rule skipping and SecLang's rule-flow actions.
//
// Coraza's rule loop (RuleGroup.Eval, v3.8.1) passes over a removed rule
// before it looks at a pending skip:N, so a removed rule is not counted by
// the skip: removing a rule that sits inside some skip:N window moves the
// window onto the rule after it. (CRS 920539 skips 920540 for JSON bodies;
// with 920540 removed the skip landed on 920014, the paranoia-2 gate, and
// paranoia-2 rules ran and logged at paranoia 1.) Rule skipping must not
// move any window, so it never removes a rule that may lie in one.
//
// A window opens when a rule q with skip:N matches, and it is consumed at
// once: the next rules of the phase are passed over without evaluation, so
// the rules removed at that moment are exactly those removed before q ran.
// Coraza counts the first N rules after q, of q's phase (or phase 0:
// SecMarker), that are not removed. A rule after q may be removed before q
// runs only by a ctl:ruleRemoveById/ByTag/ByMsg of some rule (a removal
// that also takes q away is harmless: q then never runs) or by a removal
// made outside the rules (the tenants' exclusions, which tell rule skipping
// which rules they removed). So the window is protected from the rule after
// q up to the N-th rule no such removal can take away: whatever the other
// removals, Coraza's window ends there or earlier, and rule skipping removes
// nothing inside it.
//
// skipAfter (passing over rules up to a SecMarker) is not affected: removed
// rules are passed over either way, and SecMarkers (id 0) are never
// removed.

// flowEntry is what rule skipping knows of one rule's effect on the flow of
// the rules after it, read from its text (all chain links).
type flowEntry struct {
	id    int
	phase types.RulePhase
	tags  []string
	// skip: the largest skip:N of the rule (0: none). skipAll: the rule
	// may skip an unknown number of rules (its text could not be read, or
	// it combines skip with skipAfter): protect the rest of its phase.
	skip    int
	skipAll bool
	removes []ruleRemoval
	table   *skipTable // the table of a neoSkip rule
	// sets: the TX variables its setvar actions write (lowercase);
	// setPrefixes: the literal prefixes of dynamic names; unreadable: it
	// may write anything.
	sets        []string
	setPrefixes []string
	unreadable  bool
}

// ruleRemoval is one ctl:ruleRemoveById, ruleRemoveByTag or ruleRemoveByMsg.
type ruleRemoval struct {
	lo, hi int    // by id: the range (lo == hi for one id)
	tag    string // by tag
	byMsg  bool   // by message: taken to cover every rule but its own
	any    bool   // unreadable: taken to cover every rule but its own
}

// covers reports whether the removal may remove the rule (an
// over-estimate).
func (m *ruleRemoval) covers(e *flowEntry) bool {
	switch {
	case m.any || m.byMsg:
		return true
	case m.tag != "":
		for _, t := range e.tags {
			if t == m.tag {
				return true
			}
		}
		return false
	default:
		return e.id >= m.lo && e.id <= m.hi
	}
}

// certainlyCovers reports whether the removal surely removes the rule (an
// under-estimate).
func (m *ruleRemoval) certainlyCovers(e *flowEntry) bool {
	if m.any || m.byMsg {
		return false
	}
	return m.covers(e)
}

// readFlow reads a rule's flow actions from its text (a chain's text holds
// every link, one per line).
func readFlow(raw string, e *flowEntry) {
	lower := strings.ToLower(raw)
	if !strings.Contains(lower, "skip") && !strings.Contains(lower, "ctl") && !strings.Contains(lower, "setvar") {
		return // fast path: no flow action at all
	}
	for _, link := range strings.Split(raw, "\n") {
		acts, ok := ruleActions(strings.TrimSpace(link))
		if !ok {
			// Unreadable: assume the worst of what its text mentions.
			l := strings.ToLower(link)
			if strings.Contains(l, "skip") {
				e.skipAll = true
			}
			if strings.Contains(l, "ctl") {
				e.removes = append(e.removes, ruleRemoval{any: true})
			}
			if strings.Contains(l, "setvar") {
				e.unreadable = true
			}
			continue
		}
		hasSkipAfter := false
		for _, a := range splitActions(acts) {
			k, v, _ := strings.Cut(strings.TrimSpace(a), ":")
			k = strings.ToLower(strings.TrimSpace(strings.Trim(strings.TrimSpace(k), "'")))
			v = strings.Trim(strings.TrimSpace(v), "'")
			switch k {
			case "skip":
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || n < 1 {
					e.skipAll = true
				}
				e.skip = max(e.skip, n)
			case "skipafter":
				hasSkipAfter = true
			case "ctl":
				if m, ok := readCtlRemoval(v); ok {
					e.removes = append(e.removes, m)
				}
			case "setvar":
				readSetvar(v, e)
			}
		}
		if hasSkipAfter && e.skip > 0 {
			e.skipAll = true
		}
	}
}

// ruleActions returns the action list of a SecRule or SecAction text.
func ruleActions(s string) (string, bool) {
	name, rest, _ := strings.Cut(s, " ")
	switch strings.ToLower(name) {
	case "secrule":
		_, _, acts, ok := splitSecRule(s)
		return acts, ok
	case "secaction":
		q, _, ok := cutQuoted(strings.TrimSpace(rest))
		if !ok {
			return "", false
		}
		return q[1 : len(q)-1], true
	case "secmarker":
		return "", true
	}
	return "", false
}

// readCtlRemoval reads a ctl action's argument; ok is false when it is not
// a rule removal. ctl:ruleRemoveTarget* removes targets, not rules.
func readCtlRemoval(v string) (ruleRemoval, bool) {
	name, arg, _ := strings.Cut(v, "=")
	arg = strings.TrimSpace(arg)
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "ruleremovebyid":
		lo, hi, ok := readIDRange(arg)
		if !ok {
			return ruleRemoval{any: true}, true
		}
		return ruleRemoval{lo: lo, hi: hi}, true
	case "ruleremovebytag":
		if arg == "" {
			return ruleRemoval{any: true}, true
		}
		return ruleRemoval{tag: arg}, true
	case "ruleremovebymsg":
		return ruleRemoval{byMsg: true}, true
	}
	return ruleRemoval{}, false
}

// readIDRange reads "N" or "N-M".
func readIDRange(s string) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, false
	}
	if !isRange {
		return lo, lo, true
	}
	hi, err = strconv.Atoi(strings.TrimSpace(b))
	if err != nil || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// flowSeq is every rule neoRuleInfo saw, in rule order.
type flowSeq struct {
	entries  []flowEntry
	removals []ruleRemoval // every ctl rule removal of every rule
	// resolved: registered exclusion sets' rules among these (exclude.go)
	resolved  sync.Map // uint64 -> resolved
	nResolved atomic.Int64
}

// protectedIDs returns the ids of the rules that may lie in a skip:N window
// of a rule after position pos of the given phase. removed, when not nil,
// reports rules removed outside the rules (exclusions) in this
// transaction.
func (s *flowSeq) protectedIDs(pos int, phase types.RulePhase, removed func(id int) bool, protect func(id int)) {
	es := s.entries
	for qi := pos + 1; qi < len(es); qi++ {
		q := &es[qi]
		if q.phase != phase || q.skip == 0 && !q.skipAll {
			continue
		}
		need := q.skip
		for j := qi + 1; j < len(es); j++ {
			e := &es[j]
			if e.phase != phase && e.phase != 0 {
				continue
			}
			protect(e.id)
			if q.skipAll || s.mayBeRemoved(e, q, removed) {
				continue
			}
			if need--; need == 0 {
				break
			}
		}
	}
}

// mayBeRemoved reports whether e may have been removed when q runs.
func (s *flowSeq) mayBeRemoved(e, q *flowEntry, removed func(id int) bool) bool {
	if removed != nil && removed(e.id) {
		return true
	}
	for i := range s.removals {
		m := &s.removals[i]
		if m.covers(e) && !m.certainlyCovers(q) {
			return true
		}
	}
	return false
}
