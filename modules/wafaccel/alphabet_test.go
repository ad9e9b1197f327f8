package wafaccel

import (
	"regexp"
	"strings"
	"testing"
)

// project maps s into alphabets[k]: bytes outside it are dropped when drop
// is set, else replaced by a space. CRS payloads projected this way are
// attack-like inputs within the alphabet, where the restricted variants of
// the prefilters apply.
func project(s string, k int, drop bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case alphabets[k].has(s[i]):
			b.WriteByte(s[i])
		case !drop:
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func TestAlphabets(t *testing.T) {
	for k := 1; k < numAlphabets; k++ {
		if setAlphabet(alphabets[k-1]) != k-1 || alphabets[k-1][0]&^alphabets[k][0]|alphabets[k-1][1]&^alphabets[k][1] != 0 {
			t.Fatalf("alphabets %d and %d are not nested", k-1, k)
		}
	}
	for _, tc := range []struct {
		s    string
		want int
	}{
		{"", 0}, {"json.0.email", 0}, {"c00@example.com", 0}, {"Customer 00", 0},
		{"/api/search?q=1", 1}, {"Mozilla/5.0 (X11; Linux x86_64)", 1},
		{"a'b", numAlphabets}, {"a\x00b", numAlphabets}, {"\u00e9", numAlphabets}, {"a\nb", numAlphabets},
	} {
		if got := textAlphabet(tc.s); got != tc.want {
			t.Errorf("textAlphabet(%q) = %d, want %d", tc.s, got, tc.want)
		}
		var set byteSet
		for i := 0; i < len(tc.s); i++ {
			set.add(tc.s[i])
		}
		if got := setAlphabet(set); got != tc.want {
			t.Errorf("setAlphabet(%q) = %d, want %d", tc.s, got, tc.want)
		}
	}
}

// TestAlphabetRulesOut shows what the restricted variants add: inputs the
// unrestricted prefilter lets through (single letters), ruled out within an
// alphabet, and still let through outside it.
func TestAlphabetRulesOut(t *testing.T) {
	gap := `["'\)\[\x5c]*(?:(?:(?:\|\||&&)[\s\x0b]*)?\$[!#\(\*\-0-9\?@_a-\{]*)?\x5c?`
	evasive := func(w string) string {
		parts := strings.Split(w, "")
		return strings.Join(parts, gap)
	}
	for _, tc := range []struct {
		pattern string
		maybe   []string // within an alphabet or not: must pass
		out     []string // within an alphabet: ruled out
		base    string   // ruled out only by a variant
	}{
		{`(?i)(?:` + evasive("busybox") + `|` + evasive("nohup") + `)[\s\x0b&\),<>\|]`,
			[]string{"busybox ", "BusyBox|", `b"u"s"y"b"o"x `, "nohup)", "b$IFSusybox "},
			[]string{"json.0.email", "bus y box ", "no hup", "Customer 00"}, "bus y box "},
		{`[<>"'` + "`" + `]`, []string{"<", "a'b"}, []string{"abc", "a/b:c"}, ""},
		{`(?i)union[\s\x0b]+select`, []string{"UNION  SELECT", "union\tselect"}, []string{"unionselect", "union-select"}, ""},
	} {
		data := multilinePrefix + tc.pattern
		re := regexp.MustCompile(data)
		pf := buildPrefilter(data)
		if pf == nil {
			t.Errorf("%q: no prefilter", tc.pattern)
			continue
		}
		for _, s := range tc.maybe {
			if !re.MatchString(s) {
				t.Errorf("%q: test input %q does not match", tc.pattern, s)
			}
			if !pf.mayMatch(s) {
				t.Errorf("%q: %q ruled out", tc.pattern, s)
			}
		}
		for _, s := range tc.out {
			if textAlphabet(s) == numAlphabets {
				t.Errorf("%q: test input %q is in no alphabet", tc.pattern, s)
			}
			if re.MatchString(s) {
				t.Errorf("%q: test input %q matches", tc.pattern, s)
			}
			if pf.mayMatch(s) {
				t.Errorf("%q: %q not ruled out", tc.pattern, s)
			}
		}
		if tc.base != "" && !pf.check(tc.base) {
			t.Errorf("%q: the unrestricted prefilter already rules out %q: the test shows nothing", tc.pattern, tc.base)
		}
	}
}

// TestAlphabetPrefilterCRS checks the restricted variants of every CRS
// pattern's prefilter on the regression suite's payloads projected into each
// alphabet (dropping, or blanking, the bytes outside it): whenever a variant
// rules an input out, the pattern must not match it.
func TestAlphabetPrefilterCRS(t *testing.T) {
	patterns, payloads := loadCRSCorpus(t)
	step := 3 // every third payload: ~1.2 million pairs
	if testing.Short() {
		step = 11
	}
	checked, ruledOut, byVariant := 0, 0, 0
	for _, p := range patterns {
		c, err := compileRx(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.pf == nil || c.re == nil {
			continue
		}
		seen := map[string]bool{}
		for i := 0; i < len(payloads); i += step {
			for k := 0; k < numAlphabets; k++ {
				for _, drop := range []bool{true, false} {
					in := project(payloads[i], k, drop)
					if len(in) > 2048 || seen[in] {
						continue
					}
					seen[in] = true
					checked++
					if c.pf.mayMatch(in) {
						continue
					}
					ruledOut++
					if c.pf.check(in) {
						byVariant++ // only a restricted variant rules it out
					}
					if c.re.MatchString(in) {
						t.Fatalf("pattern %q: prefilter rules out %q (alphabet %d), which matches", p, in, textAlphabet(in))
					}
				}
			}
		}
	}
	t.Logf("%d (pattern, projected payload) pairs, %d ruled out by the prefilter (%d only by an alphabet variant), none of them a match", checked, ruledOut, byVariant)
	if byVariant < 1000 {
		t.Errorf("only %d pairs ruled out by an alphabet variant: the variants are hardly tested", byVariant)
	}
}

// FuzzAlphabetPrefilterSound checks the restricted variants on arbitrary
// expressions and inputs mapped into an alphabet.
func FuzzAlphabetPrefilterSound(f *testing.F) {
	for _, s := range [][2]string{
		{`(?i)b["']*u["']*s`, "BUS"},
		{`(?i)kelvin`, "KELVIN"},
		{`a\b.c|x{2,}`, "a c"},
		{`(?:^|[;|])\s*ls\b`, "ls"},
		{`[^a-z]+x`, "Ax"},
		{`.*`, ""},
		{`\d+\.\d+`, "1.5"},
	} {
		f.Add(s[0], s[1], uint8(0))
		f.Add(s[0], s[1], uint8(1))
	}
	f.Fuzz(func(t *testing.T, pattern, input string, k uint8) {
		data := multilinePrefix + pattern
		re, err := regexp.Compile(data)
		if err != nil {
			return
		}
		in := project(input, int(k)%numAlphabets, k&0x80 != 0)
		pf := buildPrefilter(data)
		if pf != nil && !pf.mayMatch(in) && re.MatchString(in) {
			t.Fatalf("prefilter of %q rules out %q, which matches", pattern, in)
		}
	})
}
