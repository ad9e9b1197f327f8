package wafaccel

import (
	"fmt"
	"regexp/syntax"
	"sort"
	"strings"
	"unicode/utf8"

	binsyntax "rsc.io/binaryregexp/syntax"
)

// A prefilter is a necessary condition for a regular expression to match,
// derived from its syntax tree (the idea behind RE2's FilteredRE2 and
// Hyperscan's literal factoring): a conjunction of clauses, each a set of
// literals of which at least one must occur in any input the expression
// matches. When some clause has no literal in the input, the expression cannot
// match and the regex engine is not run at all.
//
// Soundness rules (when in doubt, no requirement):
//   - a literal containing U+FFFD is dropped, since Go's regexp matches an
//     invalid UTF-8 byte as U+FFFD;
//   - case-folded ((?i)) literals are kept only when they are ASCII, and are
//     compared with ASCII case folding; because Unicode folding maps 'k' to
//     U+212A and 's' to U+017F, a clause holding a case-folded literal is
//     considered satisfied by any input that contains a byte >= 0x80;
//   - character classes become literal alternatives only when they are small
//     and ASCII-only; anything else (., large classes, *, ?, empty-width
//     assertions) imposes no requirement.
//
// A prefilter also holds restricted variants, one per alphabet of
// alphabets (see alphabet.go): the necessary condition derived from the
// expression restricted to inputs whose bytes all belong to that alphabet.
// On such inputs every character the expression consumes is one of the
// alphabet's, so classes and literals outside it can be dropped; the
// evasion-tolerant CRS patterns, whose literals are separated by optional
// punctuation, then yield whole words as literals.
type prefilter struct {
	clauses []*clause
	// never: no input can match (only in a restricted variant: the
	// expression needs a character outside the alphabet).
	never bool
	// alpha[k]: the variant for inputs within alphabets[k]; nil when there
	// is none (the unrestricted clauses apply).
	alpha [numAlphabets]*prefilter
}

// mayMatch reports whether s can possibly match; false means it certainly
// cannot.
func (p *prefilter) mayMatch(s string) bool {
	return p.mayMatchIn(s, textAlphabet(s), nil)
}

// mayMatchIn is mayMatch for an input whose bytes all belong to
// alphabets[k] (k >= numAlphabets: no alphabet is known to hold them), and
// whose bigrams are idx (nil: not indexed).
func (p *prefilter) mayMatchIn(s string, k int, idx *textIndex) bool {
	if k < numAlphabets {
		if q := p.alpha[k]; q != nil {
			if q.never {
				return false
			}
			p = q
		}
	}
	return p.checkIndexed(s, idx)
}

// check tests the clauses.
func (p *prefilter) check(s string) bool { return p.checkIndexed(s, nil) } //nolint:unused // the tests' entry point

func (p *prefilter) checkIndexed(s string, idx *textIndex) bool {
	ascii := -1 // unknown
	for _, c := range p.clauses {
		if c.fold {
			if ascii < 0 {
				ascii = 1
				for i := 0; i < len(s); i++ {
					if s[i] >= utf8.RuneSelf {
						ascii = 0
						break
					}
				}
			}
			if ascii == 0 {
				continue // cannot decide cheaply: this clause is satisfied
			}
		}
		if idx != nil && !c.mayOccur(idx) {
			return false
		}
		if !c.matches(s) {
			return false
		}
	}
	return true
}

// lit is a literal that must occur. When fold is set, s is lower-case ASCII
// and is compared with ASCII case folding.
type lit struct {
	s    string
	fold bool
}

// clause is satisfied when at least one of its literals occurs in the input.
type clause struct {
	lits   []lit
	fold   bool       // some literal is case-folded
	single string     // set when the clause is one case-sensitive literal
	first  [256][]int // literal indexes by the input byte a match starts with
	// grams[i]: the ASCII-lowercased bigrams of lits[i] (for one-byte
	// literals, the lowercased byte), for textIndex.
	grams [][]uint16
}

func newClause(lits []lit) *clause {
	c := &clause{lits: lits}
	for i, l := range lits {
		b := l.s[0]
		c.first[b] = append(c.first[b], i)
		if l.fold {
			c.fold = true
			if 'a' <= b && b <= 'z' {
				c.first[b-'a'+'A'] = append(c.first[b-'a'+'A'], i)
			}
		}
	}
	if len(lits) == 1 && !lits[0].fold {
		c.single = lits[0].s
	}
	c.grams = make([][]uint16, len(lits))
	for i, l := range lits {
		c.grams[i] = bigrams(l.s)
	}
	return c
}

func (c *clause) matches(s string) bool {
	if c.single != "" {
		return strings.Contains(s, c.single)
	}
	for i := 0; i < len(s); i++ {
		cand := c.first[s[i]]
		for _, k := range cand {
			l := c.lits[k]
			if len(s)-i < len(l.s) {
				continue
			}
			if l.fold {
				if hasPrefixFold(s[i:], l.s) {
					return true
				}
			} else if s[i:i+len(l.s)] == l.s {
				return true
			}
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with lower (lower-case ASCII),
// ignoring ASCII case. len(s) >= len(lower).
func hasPrefixFold(s, lower string) bool {
	for j := 0; j < len(lower); j++ {
		b := s[j]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if b != lower[j] {
			return false
		}
	}
	return true
}

const (
	maxExact   = 64  // largest exact set carried through concatenations
	maxClause  = 512 // largest alternative set in one clause
	maxClauses = 3   // clauses kept per expression
	maxClass   = 8   // largest character class turned into literals
)

// info describes what a sub-expression matches: when exact is set it matches
// exactly one of set; clauses are requirements on the text it matches.
//
// pre and suf, when set, are sets one of which every match starts (ends)
// with; for an exact info they are its set. They let a concatenation require
// the text across the boundary of two parts (the suffixes of the left one
// followed by the prefixes of the right one).
type info struct {
	exact    bool
	set      []lit
	clauses  [][]lit
	pre, suf []lit
}

// prefixes returns the set every match starts with, or nil.
func (i info) prefixes() []lit {
	if i.exact {
		return i.set
	}
	return i.pre
}

// suffixes returns the set every match ends with, or nil.
func (i info) suffixes() []lit {
	if i.exact {
		return i.set
	}
	return i.suf
}

var unknown = info{}

func exactly(ls ...lit) info { return info{exact: true, set: ls} }

// all returns every requirement of i as clauses.
func (i info) all() [][]lit {
	out := append([][]lit(nil), i.clauses...)
	if i.exact {
		return append(out, i.set)
	}
	if i.pre != nil {
		out = append(out, i.pre)
	}
	if i.suf != nil {
		out = append(out, i.suf)
	}
	return out
}

// buildPrefilter derives a prefilter from a pattern exactly as it is
// compiled (including any flags prefix). It returns nil when the pattern
// imposes no usable requirement.
func buildPrefilter(pattern string) *prefilter {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	base := analyzer{}.analyze(re)
	var p *prefilter
	var variants [numAlphabets]*prefilter
	anyVariant := false
	for k := range alphabets {
		r := restrict(re, &alphabets[k])
		if r == nil {
			variants[k] = &prefilter{never: true}
			anyVariant = true
			continue
		}
		// Both the unrestricted requirements and the restricted ones are
		// necessary on inputs within the alphabet: the best of both.
		in := analyzer{}.analyze(r)
		if v := newPrefilter(info{clauses: append(base.all(), in.all()...)}); v != nil {
			variants[k] = v
			anyVariant = true
		}
	}
	p = newPrefilter(base)
	if p == nil {
		if !anyVariant {
			return nil
		}
		p = &prefilter{}
	}
	p.alpha = variants
	return p
}

// buildBytePrefilter derives a prefilter for a pattern that Coraza matches
// bytewise with rsc.io/binaryregexp (as compiled: without a flags prefix).
// Patterns whose text holds non-ASCII bytes get none.
func buildBytePrefilter(pattern string) *prefilter {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] >= utf8.RuneSelf {
			return nil
		}
	}
	re, err := binsyntax.Parse(pattern, binsyntax.Perl)
	if err != nil {
		return nil
	}
	conv, ok := fromBinary(re.Simplify())
	if !ok {
		return nil
	}
	return newPrefilter(analyzer{bytes: true}.analyze(conv))
}

// fromBinary converts a binaryregexp syntax tree to a regexp/syntax tree of
// the same shape (runes kept as they are: bytes), for the analyzer.
func fromBinary(re *binsyntax.Regexp) (*syntax.Regexp, bool) {
	ops := map[binsyntax.Op]syntax.Op{
		binsyntax.OpNoMatch: syntax.OpNoMatch, binsyntax.OpEmptyMatch: syntax.OpEmptyMatch,
		binsyntax.OpLiteral: syntax.OpLiteral, binsyntax.OpCharClass: syntax.OpCharClass,
		binsyntax.OpAnyCharNotNL: syntax.OpAnyCharNotNL, binsyntax.OpAnyChar: syntax.OpAnyChar,
		binsyntax.OpBeginLine: syntax.OpBeginLine, binsyntax.OpEndLine: syntax.OpEndLine,
		binsyntax.OpBeginText: syntax.OpBeginText, binsyntax.OpEndText: syntax.OpEndText,
		binsyntax.OpWordBoundary: syntax.OpWordBoundary, binsyntax.OpNoWordBoundary: syntax.OpNoWordBoundary,
		binsyntax.OpCapture: syntax.OpCapture, binsyntax.OpStar: syntax.OpStar,
		binsyntax.OpPlus: syntax.OpPlus, binsyntax.OpQuest: syntax.OpQuest,
		binsyntax.OpRepeat: syntax.OpRepeat, binsyntax.OpConcat: syntax.OpConcat,
		binsyntax.OpAlternate: syntax.OpAlternate,
	}
	op, ok := ops[re.Op]
	if !ok {
		return nil, false
	}
	out := &syntax.Regexp{Op: op, Rune: re.Rune, Min: re.Min, Max: re.Max}
	if re.Flags&binsyntax.FoldCase != 0 {
		out.Flags |= syntax.FoldCase
	}
	for _, s := range re.Sub {
		c, ok := fromBinary(s)
		if !ok {
			return nil, false
		}
		out.Sub = append(out.Sub, c)
	}
	return out, true
}

// newPrefilter keeps the best clauses of an analysis; nil when none is usable.
func newPrefilter(in info) *prefilter {
	var cands [][]lit
	seen := map[string]bool{}
	for _, cl := range in.all() {
		if cl = normClause(cl); cl != nil {
			var key strings.Builder
			for _, l := range cl {
				fmt.Fprintf(&key, "%v%q", l.fold, l.s)
			}
			if !seen[key.String()] {
				seen[key.String()] = true
				cands = append(cands, cl)
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	sort.SliceStable(cands, func(a, b int) bool { return score(cands[a]) > score(cands[b]) })
	if len(cands) > maxClauses {
		cands = cands[:maxClauses]
	}
	p := &prefilter{}
	for _, cl := range cands {
		p.clauses = append(p.clauses, newClause(cl))
	}
	return p
}

// normClause deduplicates a clause and returns nil when it is trivially
// satisfied (it holds the empty string) or too large to be worth checking.
func normClause(cl []lit) []lit {
	if len(cl) == 0 || len(cl) > maxClause {
		return nil
	}
	seen := make(map[lit]bool, len(cl))
	out := make([]lit, 0, len(cl))
	for _, l := range cl {
		if l.s == "" {
			return nil
		}
		if l.fold {
			// A folded literal subsumes the same text compared exactly.
			if seen[l] {
				continue
			}
		} else if seen[l] || seen[lit{s: asciiLower(l.s), fold: true}] {
			continue
		}
		seen[l] = true
		out = append(out, l)
	}
	return out
}

// score ranks clauses by how rarely they are expected to be satisfied by
// benign text: the rarity of their most common literal, then fewer literals.
// It only steers which necessary conditions are kept, never soundness.
func score(cl []lit) int {
	m := rarity(cl[0].s)
	for _, l := range cl[1:] {
		m = min(m, rarity(l.s))
	}
	return m*1024 - len(cl)
}

// rarity estimates how seldom a literal occurs in benign request data:
// longer is rarer, and punctuation is rarer than letters, digits and spaces.
func rarity(s string) int {
	punct := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ' ' || c == '.' || c == '-' || c == '_') {
			punct++
		}
	}
	r := 2*len(s) + 2*min(punct, 2)
	return min(r, 32)
}

// analyzer derives requirements from a syntax tree. In bytes mode the tree
// comes from rsc.io/binaryregexp, whose runes 0..255 stand for single bytes.
type analyzer struct {
	bytes bool
}

func (a analyzer) analyze(re *syntax.Regexp) info {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return exactly(lit{})
	case syntax.OpLiteral:
		return a.literal(re.Rune, re.Flags&syntax.FoldCase != 0)
	case syntax.OpCharClass:
		return a.charClass(re.Rune)
	case syntax.OpCapture:
		return a.analyze(re.Sub[0])
	case syntax.OpQuest:
		sub := a.analyze(re.Sub[0])
		if sub.exact && len(sub.set) < maxExact {
			return exactly(append(append([]lit(nil), sub.set...), lit{})...)
		}
		return unknown
	case syntax.OpPlus:
		return repeated(a.analyze(re.Sub[0]))
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return repeated(a.analyze(re.Sub[0]))
		}
		return unknown
	case syntax.OpConcat:
		return a.concat(re.Sub)
	case syntax.OpAlternate:
		return a.alternate(re.Sub)
	default: // OpNoMatch, OpAnyChar, OpAnyCharNotNL, OpStar, unknown ops
		return unknown
	}
}

// repeated is the analysis of one or more repetitions of sub.
func repeated(sub info) info {
	return info{clauses: sub.all(), pre: sub.prefixes(), suf: sub.suffixes()}
}

func (a analyzer) literal(runes []rune, fold bool) info {
	if a.bytes {
		// Bytewise: no case folding is trusted, each rune is one byte.
		if fold {
			return unknown
		}
		b := make([]byte, len(runes))
		for i, r := range runes {
			if r > 0xFF {
				return unknown
			}
			b[i] = byte(r)
		}
		return exactly(lit{s: string(b)})
	}
	var b strings.Builder
	for _, r := range runes {
		if r == utf8.RuneError || (fold && r >= utf8.RuneSelf) {
			return unknown
		}
		b.WriteRune(r)
	}
	s := b.String()
	if fold {
		s = asciiLower(s)
		// A folded literal without letters is an exact literal.
		if s == strings.ToUpper(s) {
			fold = false
		}
	}
	return exactly(lit{s: s, fold: fold})
}

func (a analyzer) charClass(ranges []rune) info {
	if a.bytes {
		var set []lit
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i+1] > 0xFF || len(set)+int(ranges[i+1]-ranges[i])+1 > maxClass {
				return unknown
			}
			for r := ranges[i]; r <= ranges[i+1]; r++ {
				set = append(set, lit{s: string([]byte{byte(r)})})
			}
		}
		if len(set) == 0 {
			return unknown
		}
		return exactly(set...)
	}
	n := 0
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if hi >= utf8.RuneSelf {
			return unknown
		}
		n += int(hi-lo) + 1
		if n > maxClass {
			return unknown
		}
	}
	var set []lit
	seen := map[string]bool{}
	for i := 0; i+1 < len(ranges); i += 2 {
		for r := ranges[i]; r <= ranges[i+1]; r++ {
			s := string(r)
			up, low := strings.ToUpper(s), strings.ToLower(s)
			if up != low && classHas(ranges, []rune(up)[0]) && classHas(ranges, []rune(low)[0]) {
				if !seen[low] {
					seen[low] = true
					set = append(set, lit{s: low, fold: true})
				}
				continue
			}
			set = append(set, lit{s: s})
		}
	}
	if len(set) == 0 {
		return unknown
	}
	return exactly(set...)
}

func classHas(ranges []rune, r rune) bool {
	for i := 0; i+1 < len(ranges); i += 2 {
		if ranges[i] <= r && r <= ranges[i+1] {
			return true
		}
	}
	return false
}

func (a analyzer) concat(subs []*syntax.Regexp) info {
	acc := exactly(lit{})
	for _, sub := range subs {
		acc = join(acc, a.analyze(sub))
	}
	return acc
}

// join is the analysis of x followed by y.
func join(x, y info) info {
	if x.exact && y.exact && len(x.set)*len(y.set) <= maxExact {
		return exactly(cross(x.set, y.set)...)
	}
	out := info{clauses: append(x.all(), y.all()...)}
	left, right := x.suffixes(), y.prefixes()
	if left != nil && right != nil && len(left)*len(right) <= maxClause {
		// The text across the boundary (only a clause: it may be larger).
		out.clauses = append(out.clauses, cross(left, right))
	}
	switch {
	case !x.exact:
		out.pre = x.pre
	case right != nil && len(x.set)*len(right) <= maxExact:
		out.pre = cross(x.set, right)
	default:
		out.pre = x.set
	}
	switch {
	case !y.exact:
		out.suf = y.suf
	case left != nil && len(left)*len(y.set) <= maxExact:
		out.suf = cross(left, y.set)
	default:
		out.suf = y.set
	}
	return out
}

func cross(a, b []lit) []lit {
	out := make([]lit, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			fold := x.fold || y.fold
			xs, ys := x.s, y.s
			if fold {
				xs, ys = asciiLower(xs), asciiLower(ys)
			}
			out = append(out, lit{s: xs + ys, fold: fold})
		}
	}
	return out
}

func (a analyzer) alternate(subs []*syntax.Regexp) info {
	infos := make([]info, len(subs))
	allExact := true
	total := 0
	for i, sub := range subs {
		infos[i] = a.analyze(sub)
		if infos[i].exact {
			total += len(infos[i].set)
		} else {
			allExact = false
		}
	}
	if allExact && total <= maxExact {
		var set []lit
		for _, in := range infos {
			set = append(set, in.set...)
		}
		return exactly(set...)
	}
	// At least one branch matches: the union of each branch's best clause,
	// and of their prefixes and suffixes when every branch has them.
	var pre, suf []lit
	for k, in := range infos {
		p, q := in.prefixes(), in.suffixes()
		if k == 0 || pre != nil {
			pre = unionSmall(pre, p)
		}
		if k == 0 || suf != nil {
			suf = unionSmall(suf, q)
		}
	}
	// Two unions: of each branch's best clause, and of each branch's
	// smallest (the first may grow beyond maxClause).
	var union, small []lit
	for _, in := range infos {
		var best, least []lit
		for _, cl := range in.all() {
			if cl = normClause(cl); cl == nil {
				continue
			}
			if best == nil || score(cl) > score(best) {
				best = cl
			}
			if least == nil || len(cl) < len(least) || len(cl) == len(least) && score(cl) > score(least) {
				least = cl
			}
		}
		if best == nil {
			return info{pre: pre, suf: suf}
		}
		union = append(union, best...)
		small = append(small, least...)
	}
	return info{clauses: [][]lit{union, small}, pre: pre, suf: suf}
}

// unionSmall returns a ∪ b, or nil when either is nil or the union exceeds
// maxExact.
func unionSmall(a, b []lit) []lit {
	if b == nil || len(a)+len(b) > maxExact {
		return nil
	}
	return append(append([]lit(nil), a...), b...)
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
