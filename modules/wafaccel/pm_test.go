package wafaccel

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

// crsPhraseLists returns the arguments of every @pm and @pmFromFile rule of
// the CRS (as our operators registered them when the CRS was loaded), and
// all their phrases.
func crsPhraseLists(t testing.TB) (pm, files, phrases []string) {
	t.Helper()
	loadCRSCorpus(t)
	pmRegistry.Lock()
	for k, e := range pmRegistry.m {
		kind, arg, _ := strings.Cut(k, "\x00")
		switch kind {
		case "pm":
			pm = append(pm, arg)
		case "pmFromFile":
			files = append(files, arg)
		}
		phrases = append(phrases, strings.Split(e.text, "\n")...)
	}
	pmRegistry.Unlock()
	sort.Strings(pm)
	sort.Strings(files)
	sort.Strings(phrases)
	phrases = slices.Compact(phrases)
	if len(pm) < 5 || len(files) < 10 || len(phrases) < 1000 {
		t.Fatalf("CRS phrase lists not found: %d @pm, %d files, %d phrases", len(pm), len(files), len(phrases))
	}
	return pm, files, phrases
}

// FuzzPMAgainstCoraza compares our @pm and @pmFromFile operators with
// Coraza's own, on every phrase list of the CRS (data files read from the
// CRS's embedded filesystem, as load_owasp_crs does), with and without
// capturing: the result and every captured group must be equal. Seeded with
// the regression suite's payloads and with the phrases themselves.
func FuzzPMAgainstCoraza(f *testing.F) {
	pms, files, phrases := crsPhraseLists(f)
	_, payloads := loadCRSCorpus(f)
	for i, p := range payloads {
		f.Add(uint16(i), p)
	}
	for i, p := range phrases {
		f.Add(uint16(i*31), "x"+strings.ToUpper(p)+"y")
	}
	type pair struct {
		name         string
		mine, theirs plugintypes.Operator
	}
	var ops []pair
	for _, arg := range pms {
		opts := plugintypes.OperatorOptions{Arguments: arg}
		mine, err1 := newPMOperator(opts)
		theirs, err2 := corazaPM(opts)
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		ops = append(ops, pair{"@pm " + arg, mine, theirs})
	}
	for _, name := range append(files, "no-such-file.data") {
		opts := plugintypes.OperatorOptions{Arguments: name, Path: []string{"@owasp_crs", "."}, Root: coreruleset.FS}
		mine, err1 := newPMFromFileOperator(opts)
		theirs, err2 := corazaPMFromFile(opts)
		if (err1 == nil) != (err2 == nil) {
			f.Fatalf("%s: error %v, coraza %v", name, err1, err2)
		}
		if err1 != nil {
			continue
		}
		ops = append(ops, pair{"@pmFromFile " + name, mine, theirs})
	}
	f.Fuzz(func(t *testing.T, at uint16, input string) {
		for k := 0; k < 4; k++ {
			op := ops[(int(at)+k*len(ops)/4)%len(ops)]
			for _, capturing := range []bool{false, true} {
				a, b := &fakeTx{capturing: capturing}, &fakeTx{capturing: capturing}
				got, want := op.mine.Evaluate(a, input), op.theirs.Evaluate(b, input)
				if got != want || !sameCaptures(a.captures, b.captures) {
					t.Fatalf("%s, input %q, capturing %v: ours %v %v, coraza %v %v", op.name, input, capturing, got, a.captures, want, b.captures)
				}
			}
		}
	})
}

// TestPMRegistry checks the registry rule skipping reads phrase lists from:
// one list per argument, and none when one argument named two different
// lists.
func TestPMRegistry(t *testing.T) {
	if _, err := newPMOperator(plugintypes.OperatorOptions{Arguments: "Alpha beta"}); err != nil {
		t.Fatal(err)
	}
	if p := lookupPhrases("pm", "Alpha beta"); p == nil || !p.found("xxBETAyy", nil) || p.found("alph", nil) {
		t.Fatalf("@pm list not registered as built: %+v", p)
	}
	if p := lookupPhrases("pm", "alpha beta"); p != nil {
		t.Fatal("found under an argument no operator was built with")
	}
	root := func(data string) plugintypes.OperatorOptions {
		return plugintypes.OperatorOptions{Arguments: "neo-test.data", Path: []string{"."}, Root: fstest.MapFS{"neo-test.data": {Data: []byte(data)}}}
	}
	if _, err := newPMFromFileOperator(root("# comment\n\n  One\ntwo  \n")); err != nil {
		t.Fatal(err)
	}
	if p := lookupPhrases("pmFromFile", "neo-test.data"); p == nil || !p.found("ONE", nil) || p.found("# comment", nil) {
		t.Fatalf("@pmFromFile list not registered as built: %+v", p)
	}
	if _, err := newPMFromFileOperator(root("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	if lookupPhrases("pmFromFile", "neo-test.data") == nil {
		t.Fatal("the same list again made it ambiguous")
	}
	if _, err := newPMFromFileOperator(root("three\n")); err != nil {
		t.Fatal(err)
	}
	if lookupPhrases("pmFromFile", "neo-test.data") != nil {
		t.Fatal("two different lists under one name: still used for skipping")
	}
	if p := buildPhrases([]string{"a", ""}, true); !p.empty || !p.found("zzz", nil) {
		t.Fatal("an empty phrase matches everything")
	}
	if r, ok := parseRuleText(`SecRule ARGS "@pm Alpha beta" "id:1,t:none"`); !ok {
		t.Fatal("not parsed")
	} else if c, _, cand := r.candidate(); !cand || c.pm == nil {
		t.Fatal("@pm rule with a registered list: not a candidate")
	}
	if r, _ := parseRuleText(`SecRule ARGS "@pm alpha gamma" "id:1,t:none"`); func() bool { _, _, cand := r.candidate(); return cand }() {
		t.Fatal("@pm rule whose list no operator was built with: a candidate")
	}
}

// TestPMSkipDifferential is TestSkipDifferential for the phrase-list rules:
// requests carrying CRS phrases (whole, cut, case-flipped, percent-encoded,
// embedded in words) in query arguments, JSON and form bodies, cookies and
// headers, through the CRS at paranoia level 4 with and without rule
// skipping: the set of matched rules must be identical. It also checks
// that phrase-list rules were both removed and matched, so that it tests
// something.
func TestPMSkipDifferential(t *testing.T) {
	_, _, phrases := crsPhraseLists(t)
	n := 500
	if testing.Short() {
		n = 120
	}
	plain, skip := newCRSWAF(t), newCRSWAFSkip(t, true)
	rng := rand.New(rand.NewPCG(11, 12))
	word := func() string {
		w := []string{"alpha", "Customer 07", "c7@example.com", "json", "42", "a.b", "x_y", "blue shoes", "path/to/x", "ok."}
		return w[rng.IntN(len(w))]
	}
	pick := func() string {
		if rng.IntN(3) == 0 {
			return word()
		}
		p := phrases[rng.IntN(len(phrases))]
		switch rng.IntN(6) {
		case 0:
			p = strings.ToUpper(p)
		case 1:
			if len(p) > 2 {
				p = p[:len(p)-1] // cut: most no longer match
			}
		case 2:
			p = url.QueryEscape(p)
		case 3:
			p = word() + p + word()
		case 4:
			p = project(p, rng.IntN(numAlphabets), true)
		}
		return p
	}
	countStats = true
	defer func() { countStats = false }()
	r0 := skipRemovedPM.Load()
	diffs, nondet, pmMatched := 0, 0, 0
	pmRules := map[int]bool{930120: true, 930130: true, 932120: true, 932160: true, 933120: true, 933130: true, 933150: true, 933151: true,
		934110: true, 934190: true, 941180: true, 944130: true}
	for i := 0; i < n; i++ {
		q := url.Values{}
		for k := rng.IntN(3); k > 0; k-- {
			q.Add(pick(), pick())
		}
		r := request{Method: "GET", URI: "/api/x?" + q.Encode(), Version: "HTTP/1.1",
			Headers: [][2]string{{"Host", "example.com"}, {"User-Agent", "Mozilla/5.0 " + pick()}, {"Accept", "*/*"}, {"Cookie", "sid=" + url.QueryEscape(pick())}}}
		withRandomBody(rng, &r, pick, pick)
		want, got := plain.matchedIDs(r), skip.matchedIDs(r)
		for _, id := range want {
			if pmRules[id] {
				pmMatched++
				break
			}
		}
		if !slices.Equal(want, got) && plainCanGive(plain, r, got) {
			nondet++
			continue
		}
		if !slices.Equal(want, got) {
			diffs++
			if diffs <= 10 {
				t.Errorf("request %d %s %q %q body %q: without skipping %v, with %v", i, r.Method, r.URI, r.Headers, r.Body, want, got)
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d requests matched different rules with skipping", diffs, n)
	}
	removed := skipRemovedPM.Load() - r0
	t.Logf("%d requests, %d matched a phrase-list rule; %d phrase-list rule removals; %d differed once but Coraza gives the same on a rerun", n, pmMatched, removed, nondet)
	if pmMatched < n/10 || removed == 0 {
		t.Errorf("the test exercised too little: %d requests matched a phrase-list rule, %d rules removed", pmMatched, removed)
	}
}
