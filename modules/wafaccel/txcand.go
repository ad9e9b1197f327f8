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
	// constant: the argument has no macro; num is its value
	constant bool
	num      int
	// slot, argSlot: indexes into the per-transaction values (txSlots)
	slot, argSlot int
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
	} else if n, err := strconv.Atoi(arg); err != nil {
		return nil, false
	} else {
		c.constant, c.num = true, n
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
func (c *txCond) mayMatch(tx plugintypes.TransactionState) bool { //nolint:unused // the differential tests' reference
	col, ok := tx.Collection(variables.TX).(collection.Keyed)
	if !ok {
		return true
	}
	vals := col.Get(c.name)
	if c.count {
		vals = []string{strconv.Itoa(len(vals))}
	}
	data, _ := strconv.Atoi(c.arg.Expand(tx))
	return c.compare(vals, data)
}

// compare reports whether the comparison holds for one of the values
// (Coraza reads each with strconv.Atoi, 0 when it is not a number).
func (c *txCond) compare(vals []string, data int) bool {
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

// txSlots is, for one table, the distinct TX reads of its candidates: each
// variable (or count) and each macro argument is read once per
// transaction.
type txSlots struct {
	reads []txRead
}

type txRead struct {
	name  string
	count bool
	arg   macro.Macro // an argument to expand (name is then empty)
}

func (s *txSlots) slot(r txRead) int {
	for i, x := range s.reads {
		if x.name == r.name && x.count == r.count && (x.arg == nil) == (r.arg == nil) && (r.arg == nil || x.arg.String() == r.arg.String()) {
			return i
		}
	}
	s.reads = append(s.reads, r)
	return len(s.reads) - 1
}

// assign gives c its slots.
func (s *txSlots) assign(c *txCond) {
	c.slot = s.slot(txRead{name: c.name, count: c.count})
	c.argSlot = -1
	if !c.constant {
		c.argSlot = s.slot(txRead{arg: c.arg})
	}
}

// txValues are one transaction's reads, by slot.
type txValues struct {
	vals [][]string
	args []int
}

// read reads every slot.
func (s *txSlots) read(tx plugintypes.TransactionState, v *txValues) bool {
	col, ok := tx.Collection(variables.TX).(collection.Keyed)
	if !ok {
		return false
	}
	v.vals = v.vals[:0]
	v.args = v.args[:0]
	for _, r := range s.reads {
		var vals []string
		arg := 0
		switch {
		case r.arg != nil:
			arg, _ = strconv.Atoi(r.arg.Expand(tx))
		case r.count:
			vals = []string{strconv.Itoa(len(col.Get(r.name)))}
		default:
			vals = col.Get(r.name)
		}
		v.vals = append(v.vals, vals)
		v.args = append(v.args, arg)
	}
	return true
}

// mayMatchWith is mayMatch on values read by txSlots.read.
func (c *txCond) mayMatchWith(v *txValues) bool {
	data := c.num
	if !c.constant {
		data = v.args[c.argSlot]
	}
	return c.compare(v.vals[c.slot], data)
}
