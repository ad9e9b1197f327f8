package wafaccel

import "sync"

// textIndex records which byte pairs (ASCII-lowercased) occur in a text.
// Rule skipping checks many clauses against the same joined values; a
// literal whose bigrams do not all occur cannot occur, so most clauses are
// refuted without scanning the text. (A necessary condition only: a clause
// that passes is then checked by scanning.)
type textIndex struct {
	pairs [pairBits / 64]uint64 // hashed bigrams (see pairSlot)
	bytes byteSet
}

// pairBits is the size of the hashed bigram table: small enough to clear
// cheaply, large enough that the few hundred distinct bigrams of benign
// text leave most slots empty.
const pairBits = 1 << 14

// pairSlot maps a bigram to its slot (several bigrams may share one: the
// index then only says "may occur" more often).
func pairSlot(k uint16) uint32 { return uint32(k) * 0x9E3779B1 >> (32 - 14) }

// minIndexed is the shortest text worth indexing (indexing costs about as
// much as one scan, plus clearing the table).
const minIndexed = 64

var indexPool = sync.Pool{New: func() any { return new(textIndex) }}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// build indexes s into x, which must be clear.
func (x *textIndex) build(s string) { //nolint:unused // the tests build indexes directly
	if len(s) == 0 {
		return
	}
	prev := lowerByte(s[0])
	x.bytes.add(prev)
	for i := 1; i < len(s); i++ {
		c := lowerByte(s[i])
		x.bytes.add(c)
		k := pairSlot(uint16(prev)<<8 | uint16(c))
		x.pairs[k>>6] |= 1 << (k & 63)
		prev = c
	}
}

func (x *textIndex) reset() { *x = textIndex{} }

// bigrams returns the slots of the lowercased byte pairs of s; for a
// one-byte s, the lowercased byte (mayHold tells them apart by the
// literal's length).
func bigrams(s string) []uint16 {
	if len(s) == 1 {
		return []uint16{uint16(lowerByte(s[0]))}
	}
	g := make([]uint16, 0, len(s)-1)
	for i := 1; i < len(s); i++ {
		g = append(g, uint16(pairSlot(uint16(lowerByte(s[i-1]))<<8|uint16(lowerByte(s[i])))))
	}
	return g
}

// mayOccur reports whether some literal of the clause may occur in the
// indexed text.
func (c *clause) mayOccur(x *textIndex) bool {
	for i, g := range c.grams {
		if x.mayHold(g, len(c.lits[i].s)) {
			return true
		}
	}
	return false
}

// mayHold reports whether a literal of n bytes whose bigrams are g may occur
// in the indexed text.
func (x *textIndex) mayHold(g []uint16, n int) bool {
	if n == 1 {
		return x.bytes.has(byte(g[0]))
	}
	for _, k := range g {
		if x.pairs[k>>6]&(1<<(k&63)) == 0 {
			return false
		}
	}
	return true
}
