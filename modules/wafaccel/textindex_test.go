package wafaccel

import (
	"strings"
	"testing"
)

// FuzzTextIndex checks that the bigram index never refutes a clause that
// the text satisfies: whenever a clause matches the text, mayOccur holds.
func FuzzTextIndex(f *testing.F) {
	f.Add("union\x00Select\x00x", "xx UNION ...", uint8(3))
	f.Add("a\x00Bc", "zzBC", uint8(0))
	f.Add("../\x00etc", "/ETC/passwd", uint8(1))
	f.Fuzz(func(t *testing.T, lits, text string, fold uint8) {
		var ls []lit
		for i, s := range strings.Split(lits, "\x00") {
			if s == "" || len(ls) == 16 {
				continue
			}
			l := lit{s: s}
			if fold>>(i%8)&1 == 1 {
				l = lit{s: asciiLower(s), fold: true}
			}
			ls = append(ls, l)
		}
		if len(ls) == 0 {
			return
		}
		c := newClause(ls)
		x := new(textIndex)
		x.build(text)
		if c.matches(text) && !c.mayOccur(x) {
			t.Fatalf("literals %+v in %q: the index refutes a clause the text satisfies", ls, text)
		}
	})
}

func TestTextIndexRefutes(t *testing.T) {
	x := new(textIndex)
	x.build(strings.Repeat(`{"id":1000,"name":"Customer 00","email":"c00@example.com"},`, 10))
	for _, tc := range []struct {
		lits []lit
		may  bool
	}{
		{[]lit{{s: "customer", fold: true}}, true},
		{[]lit{{s: "Customer"}}, true},
		{[]lit{{s: "union", fold: true}}, false},
		{[]lit{{s: "<"}}, false},
		{[]lit{{s: "@"}}, true},
		{[]lit{{s: "select"}, {s: "ample"}}, true},
		{[]lit{{s: "msu"}}, false}, // every byte occurs, but not the pairs
	} {
		if got := newClause(tc.lits).mayOccur(x); got != tc.may {
			t.Errorf("%+v: mayOccur %v, want %v", tc.lits, got, tc.may)
		}
	}
}
