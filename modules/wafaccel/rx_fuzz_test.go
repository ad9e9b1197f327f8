package wafaccel

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/debuglog"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
	"github.com/corazawaf/coraza/v3/types/variables"
	"rsc.io/binaryregexp"
)

// fakeTx records captures; it is all an @rx operator looks at.
type fakeTx struct {
	capturing bool
	captures  map[int]string
}

func (t *fakeTx) ID() string                                              { return "fuzz" }
func (t *fakeTx) Variables() plugintypes.TransactionVariables             { return nil }
func (t *fakeTx) Collection(variables.RuleVariable) collection.Collection { return nil }
func (t *fakeTx) Interrupt(*types.Interruption)                           {}
func (t *fakeTx) DebugLogger() debuglog.Logger                            { return debuglog.Noop() }
func (t *fakeTx) Capturing() bool                                         { return t.capturing }
func (t *fakeTx) LastPhase() types.RulePhase                              { return types.PhaseRequestBody }
func (t *fakeTx) CaptureField(i int, v string) {
	if t.captures == nil {
		t.captures = map[int]string{}
	}
	t.captures[i] = v
}

var crsCorpus struct {
	once     sync.Once
	patterns []string
	payloads []string
}

// loadCRSCorpus collects every @rx pattern of the CRS (and of Coraza's
// recommended config) and every request payload of the CRS regression suite.
func loadCRSCorpus(t testing.TB) ([]string, []string) {
	crsCorpus.once.Do(func() {
		newCRSWAF(t)
		rxCache.Range(func(k, _ any) bool {
			crsCorpus.patterns = append(crsCorpus.patterns, k.(string))
			return true
		})
		sort.Strings(crsCorpus.patterns)
		seen := map[string]bool{}
		for _, c := range loadCRSTests(t) {
			for _, st := range c.Test.Stages {
				r, skip := buildRequest(st.Input)
				if skip != "" {
					continue
				}
				for _, s := range []string{r.URI, string(r.Body)} {
					if s != "" && !seen[s] {
						seen[s] = true
						crsCorpus.payloads = append(crsCorpus.payloads, s)
					}
				}
				for _, h := range r.Headers {
					if !seen[h[1]] {
						seen[h[1]] = true
						crsCorpus.payloads = append(crsCorpus.payloads, h[1])
					}
				}
			}
		}
	})
	if len(crsCorpus.patterns) < 200 || len(crsCorpus.payloads) < 1000 {
		t.Fatalf("CRS corpus too small: %d patterns, %d payloads", len(crsCorpus.patterns), len(crsCorpus.payloads))
	}
	return crsCorpus.patterns, crsCorpus.payloads
}

// FuzzRxAgainstCoraza compares the accelerated @rx with Coraza's own on the
// same input, for a window of CRS patterns, with and without capturing: the
// result and every captured group must be equal. Seeded with the payloads of
// the CRS regression suite.
func FuzzRxAgainstCoraza(f *testing.F) {
	patterns, payloads := loadCRSCorpus(f)
	for i, p := range payloads {
		f.Add(uint16(i*7919), p)
		// The same payload within each alphabet, where the prefilters'
		// restricted variants apply (alphabet.go).
		for k := 0; k < numAlphabets; k++ {
			f.Add(uint16(i*7919+k+1), project(p, k, i%2 == 0))
		}
	}
	type pair struct{ mine, theirs plugintypes.Operator }
	ops := make([]pair, len(patterns))
	for i, p := range patterns {
		mine, err := newRxOperator(plugintypes.OperatorOptions{Arguments: p})
		if err != nil {
			f.Fatal(err)
		}
		theirs, err := corazaRx(plugintypes.OperatorOptions{Arguments: p})
		if err != nil {
			f.Fatal(err)
		}
		ops[i] = pair{mine, theirs}
	}
	const window = 8
	f.Fuzz(func(t *testing.T, at uint16, input string) {
		for k := 0; k < window; k++ {
			i := (int(at) + k*len(patterns)/window) % len(patterns)
			for _, capturing := range []bool{false, true} {
				a, b := &fakeTx{capturing: capturing}, &fakeTx{capturing: capturing}
				got, want := ops[i].mine.Evaluate(a, input), ops[i].theirs.Evaluate(b, input)
				if got != want || !sameCaptures(a.captures, b.captures) {
					t.Fatalf("pattern %q, input %q, capturing %v: accelerated %v %v, coraza %v %v",
						patterns[i], input, capturing, got, a.captures, want, b.captures)
				}
			}
		}
	})
}

func sameCaptures(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// FuzzPrefilterSound checks the prefilter on arbitrary expressions: whenever
// it rules an input out, the regex must not match it.
func FuzzPrefilterSound(f *testing.F) {
	for _, s := range [][2]string{
		{`(?i)kelvin`, "\u212aelvin"},
		{`(?i)select\s+from`, "SELECT  FROM"},
		{`(?i)ſ`, "S"},
		{`a[bB]c`, "aBc"},
		{`(?:foo|bar)+baz`, "barbaz"},
		{`(?i)x?(?:ab|cd){2}`, "ABcd"},
		{`\x{fffd}`, "\xff"},
		{`[^a]bc`, "\xffbc"},
		{`(?i)(?:on(?:load|error)|src)\s*=`, "ONLOAD ="},
		{`(?i)[k]ey`, "\u212aey"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, input string) {
		data := multilinePrefix + pattern
		re, err := regexp.Compile(data)
		if err != nil {
			return
		}
		pf := buildPrefilter(data)
		if pf != nil && !pf.mayMatch(input) && re.MatchString(input) {
			t.Fatalf("prefilter of %q rules out %q, which matches", pattern, input)
		}
	})
}

// FuzzBytePrefilterSound checks the same for patterns matched bytewise
// (rsc.io/binaryregexp), as Coraza does for patterns with non-UTF-8 escapes.
func FuzzBytePrefilterSound(f *testing.F) {
	for _, s := range [][2]string{
		{`\x{bc}[^>\x{be}]*[>\x{be}]|<[^\x{be}]*\x{be}`, "<a\xbe"},
		{`\$+(?:[A-Z_a-z\x7f-\x{ff}][0-9A-Z_a-z\x7f-\x{ff}]*)\(`, "$\xffa("},
		{`\xac\xed\x00\x05`, "\xac\xed\x00\x05"},
		{`(?i)\xc0abc`, "\xc0ABC"},
		{`[\x80-\x81]z`, "\x81z"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, input string) {
		re, err := binaryregexp.Compile(pattern)
		if err != nil {
			return
		}
		pf := buildBytePrefilter(pattern)
		if pf != nil && !pf.mayMatch(input) && re.MatchString(input) {
			t.Fatalf("byte prefilter of %q rules out %q, which matches", pattern, input)
		}
	})
}

// FuzzBytewiseDecision checks that a pattern is matched bytewise exactly
// when Coraza's own @rx matches it bytewise, and that both accept and reject
// the same patterns.
func FuzzBytewiseDecision(f *testing.F) {
	for _, p := range []string{`\x{bc}[^>\x{be}]*`, `\xc3\xa9`, `\xff`, `\x{1F600}`, `a\x4`, `\\xff`, `[\x80-\xff]`, `\x{}`, `x\x{e9}y`} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		mine, errMine := compileUncached(pattern)
		theirs, errTheirs := corazaRx(plugintypes.OperatorOptions{Arguments: pattern})
		if (errMine == nil) != (errTheirs == nil) {
			t.Fatalf("%q: compile error %v, coraza %v", pattern, errMine, errTheirs)
		}
		if errMine != nil {
			return
		}
		if got, want := mine.bin != nil, fmt.Sprintf("%T", theirs) == "*operators.binaryRX"; got != want {
			t.Fatalf("%q: bytewise %v, coraza %v (%T)", pattern, got, want, theirs)
		}
	})
}

// TestPrefilterRulesOut shows the prefilter does its job: these inputs are
// ruled out without running the regex (and indeed do not match).
func TestPrefilterRulesOut(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		maybe   []string
		out     []string
	}{
		{`(?i)union\s+select`, []string{"UNION select", "x unIon  SELECT y"}, []string{"hello", "union", "select"}},
		{`<script[^>]*>`, []string{"<script>"}, []string{"<SCRIPT>", "script"}},
		{`(?i)(?:on(?:load|error)|src)\s*=`, []string{"onerror=", "SRC ="}, []string{"onclick=", "source"}},
		{`(?i)kelvin`, []string{"KELVIN", "\u212aelvin"}, []string{"kelvi"}},
		{`a[bB]c`, []string{"abc", "aBc"}, []string{"ac", "a c"}},
	} {
		pf := buildPrefilter(multilinePrefix + tc.pattern)
		if pf == nil {
			t.Errorf("%q: no prefilter", tc.pattern)
			continue
		}
		re := regexp.MustCompile(multilinePrefix + tc.pattern)
		for _, s := range tc.maybe {
			if !pf.mayMatch(s) {
				t.Errorf("%q: %q ruled out", tc.pattern, s)
			}
		}
		for _, s := range tc.out {
			if pf.mayMatch(s) {
				t.Errorf("%q: %q not ruled out", tc.pattern, s)
			}
			if re.MatchString(s) {
				t.Errorf("%q: test input %q matches", tc.pattern, s)
			}
		}
	}
}

// TestCRSPatternsHavePrefilters guards the acceleration's reach: most CRS
// patterns must get a prefilter.
func TestCRSPatternsHavePrefilters(t *testing.T) {
	patterns, _ := loadCRSCorpus(t)
	with := 0
	var bin []string
	for _, p := range patterns {
		c, err := compileRx(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.pf != nil {
			with++
		}
		if c.bin != nil {
			bin = append(bin, p)
		}
		theirs, err := corazaRx(plugintypes.OperatorOptions{Arguments: p})
		if err != nil {
			t.Fatal(err)
		}
		if (c.bin != nil) != (fmt.Sprintf("%T", theirs) == "*operators.binaryRX") {
			t.Errorf("%q: bytewise %v, coraza's operator is %T", p, c.bin != nil, theirs)
		}
	}
	t.Logf("%d of %d CRS patterns have a prefilter; %d are matched bytewise", with, len(patterns), len(bin))
	for _, p := range []string{`\x{bc}[^>\x{be}]*[>\x{be}]|<[^\x{be}]*\x{be}`} {
		if c, _ := compileRx(p); c == nil || c.bin == nil || c.pf == nil {
			t.Errorf("bytewise pattern %q: no prefilter", p)
		}
	}
	if with*100 < len(patterns)*80 {
		t.Errorf("only %d of %d patterns have a prefilter", with, len(patterns))
	}
	_ = slices.Clip(bin)
}
