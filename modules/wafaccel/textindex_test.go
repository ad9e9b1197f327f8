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

// FuzzNewStage checks the one-pass stage description against the plain
// definitions: bytes present, a value that is ".", a value ending in '.' or
// ' ', and the bigram index.
func FuzzNewStage(f *testing.F) {
	f.Add(".\x00a.\x00", false)
	f.Add(strings.Repeat("abc \x00", 200)+".\x00", false)
	f.Add("x\x00y", true)
	f.Fuzz(func(t *testing.T, text string, nul bool) {
		if len(text) < minIndexed && len(text) > 0 && text[0] == 'L' {
			text = strings.Repeat(text, minIndexed/len(text)+1)
		}
		var idxs []*textIndex
		st := newStage(text, nul, &idxs)
		var present byteSet
		for i := 0; i < len(text); i++ {
			present.add(text[i])
		}
		present[0] &^= 1
		if nul {
			present.add(0)
		}
		dot := strings.HasPrefix(text, ".\x00") || strings.Contains(text, "\x00.\x00")
		tail := nul || strings.Contains(text, ".\x00") || strings.Contains(text, " \x00")
		if st.present != present || st.dot != dot || st.tail != tail || st.alpha != setAlphabet(present) {
			t.Fatalf("%q: stage %+v, want present %v dot %v tail %v", text, st, present, dot, tail)
		}
		if (st.idx != nil) != (len(text) >= minIndexed) {
			t.Fatalf("%q: index %v", text, st.idx != nil)
		}
		if st.idx != nil {
			want := new(textIndex)
			want.build(text)
			if *st.idx != *want {
				t.Fatalf("%q: index differs from build", text)
			}
		}
	})
}

// FuzzPhraseIndex checks that the bigram index never hides a phrase the
// Aho-Corasick scan finds.
func FuzzPhraseIndex(f *testing.F) {
	f.Add("etc/passwd\x00/bin/sh\x00a", "GET /ETC/PASSWD")
	f.Add("x\x00yz", "ZYX")
	f.Fuzz(func(t *testing.T, list, text string) {
		var phrases []string
		for _, p := range strings.Split(list, "\x00") {
			if p != "" {
				phrases = append(phrases, strings.ToLower(p))
			}
		}
		if len(phrases) == 0 {
			return
		}
		p := buildPhrases(phrases, false)
		x := new(textIndex)
		x.build(text)
		if p.found(text, nil) && !p.found(text, x) {
			t.Fatalf("phrases %q in %q: hidden by the index", phrases, text)
		}
	})
}
