package wafaccel

import (
	"strconv"
	"strings"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins/macro"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// Rules on settled TX variables. The CRS evaluates, in every phase, rules
// that compare a TX variable with a number: the paranoia-level gates
// (`TX:DETECTION_PARANOIA_LEVEL "@lt 1"`, two per file and phase), the
// per-level score sums (`TX:BLOCKING_PARANOIA_LEVEL "@ge 2"`), the
// reporting level. Their variables are set in phase 1 and no rule of a
// later phase writes them, so at the start of phases 2 to 5 their value is
// the value they will have when the rule runs: neoSkip evaluates the
// comparison then, exactly as Coraza's operator does (strconv.Atoi of both
// sides, the argument's macro expanded by Coraza's own macro package), and
// removes the rule when it cannot match.
//
// A rule is such a candidate when its text is `SecRule TX:<name>|&TX:<name>
// "[!]@lt|@le|@gt|@ge|@eq <number or %{tx.<name>}>"`, with no
// transformation (or t:none only), in phase 2 or later, and no rule of its
// phase writes its variable or the argument's (setvar, statically, dynamic
// names by their literal prefix; capture writes TX:0 to TX:9, never a
// candidate's). Default actions (SecDefaultAction) are not visible to the
// rule reader: a transformation there that changes digit strings (length,
// hexEncode, base64Encode, md5, sha1) would make the comparison differ;
// Coraza's recommended configuration and the CRS setup have none.

// txCond is a comparison of a TX variable.
type txCond struct {
	name  string // lowercase
	count bool   // &TX:name
	op    string // lt, le, gt, ge, eq
	neg   bool
	arg   macro.Macro
	uses  []string // TX variables the argument reads (lowercase)
}

var txOps = map[string]bool{"lt": true, "le": true, "gt": true, "ge": true, "eq": true}

// txCandidate reads a TX comparison rule; ok is false for anything else.
func (r ruleText) txCandidate() (*txCond, bool) {
	if len(r.vars) != 1 || r.multi || len(r.trans) != 0 {
		return nil, false
	}
	v := r.vars[0]
	if !strings.EqualFold(v.name, "TX") || v.exclude || v.key == "" || strings.HasPrefix(v.key, "/") || digits(v.key) {
		return nil, false
	}
	op := strings.ToLower(r.opName)
	if !txOps[op] {
		return nil, false
	}
	c := &txCond{name: strings.ToLower(v.key), count: v.count, op: op, neg: r.neg}
	arg := r.opArg
	if strings.Contains(arg, "%{") {
		inner, ok := strings.CutPrefix(arg, "%{")
		inner, ok2 := strings.CutSuffix(inner, "}")
		col, key, ok3 := strings.Cut(inner, ".")
		if !ok || !ok2 || !ok3 || !strings.EqualFold(col, "tx") || key == "" || strings.ContainsAny(key, "%{}") {
			return nil, false
		}
		c.uses = append(c.uses, strings.ToLower(key))
	} else if _, err := strconv.Atoi(arg); err != nil {
		return nil, false
	}
	m, err := macro.NewMacro(arg)
	if err != nil {
		return nil, false
	}
	c.arg = m
	return c, true
}

// mayMatch reports whether the rule may match with the transaction's TX
// values now.
func (c *txCond) mayMatch(tx plugintypes.TransactionState) bool {
	col, ok := tx.Collection(variables.TX).(collection.Keyed)
	if !ok {
		return true
	}
	vals := col.Get(c.name)
	if c.count {
		vals = []string{strconv.Itoa(len(vals))}
	}
	data, _ := strconv.Atoi(c.arg.Expand(tx))
	for _, s := range vals {
		v, _ := strconv.Atoi(s)
		var m bool
		switch c.op {
		case "lt":
			m = v < data
		case "le":
			m = v <= data
		case "gt":
			m = v > data
		case "ge":
			m = v >= data
		case "eq":
			m = v == data
		}
		if m != c.neg {
			return true
		}
	}
	return false
}

// txWrites is what the rules of one phase write in TX.
type txWrites struct {
	names    map[string]bool
	prefixes []string // dynamic names: their literal prefixes
}

func (w *txWrites) writes(name string) bool {
	if w.names[name] {
		return true
	}
	for _, p := range w.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// readSetvar records the TX variable a setvar action writes.
func readSetvar(v string, e *flowEntry) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "!")
	target, _, _ := strings.Cut(v, "=")
	col, name, ok := strings.Cut(strings.TrimSpace(target), ".")
	if !ok {
		if strings.Contains(target, "%{") {
			e.setPrefixes = append(e.setPrefixes, "") // unknown collection: any
		}
		return
	}
	if !strings.EqualFold(col, "tx") {
		if strings.Contains(col, "%{") {
			e.setPrefixes = append(e.setPrefixes, "")
		}
		return
	}
	name = strings.ToLower(name)
	if i := strings.Index(name, "%{"); i >= 0 {
		e.setPrefixes = append(e.setPrefixes, name[:i])
		return
	}
	e.sets = append(e.sets, name)
}

// phaseWrites collects the TX writes of the rules of a phase.
func (s *flowSeq) phaseWrites(phase int) *txWrites {
	w := &txWrites{names: map[string]bool{}}
	for i := range s.entries {
		e := &s.entries[i]
		if int(e.phase) != phase && e.phase != 0 {
			continue
		}
		for _, n := range e.sets {
			w.names[n] = true
		}
		w.prefixes = append(w.prefixes, e.setPrefixes...)
		if e.unreadable {
			w.prefixes = append(w.prefixes, "")
		}
	}
	return w
}

// settled reports whether no rule of the phase writes what c reads.
func (c *txCond) settled(w *txWrites) bool {
	if w.writes(c.name) {
		return false
	}
	for _, u := range c.uses {
		if w.writes(u) {
			return false
		}
	}
	return true
}
