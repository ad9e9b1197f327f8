package wafaccel

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const excludeDirective = `SecAction "id:900965,phase:1,pass,nolog,neoExclude"` + "\n"

// withExclusions returns r with the exclusion header naming set n, mask.
func withExclusions(r request, n, mask uint64) request {
	r.Headers = append(slices.Clone(r.Headers), [2]string{ExclusionHeader, ExclusionHeaderValue(n, mask)})
	return r
}

// TestExclusions: a rule-wide exclusion, a tag, a path-independent
// argument exclusion, and the mask choosing among them.
func TestExclusions(t *testing.T) {
	d := DistinctKeysDirectives + "Include @coraza.conf-recommended\nSecRuleEngine On\nInclude @crs-setup.conf.example\n" +
		excludeDirective + SkipDirectivesBefore + "Include @owasp_crs/*.conf\n" + SkipDirectivesAfter
	waf := buildWAF(t, d, true)
	attack := request{Method: "GET", URI: "/search?q=" + "1%27%20OR%20%271%27%3D%271" + "&x=fine", Version: "HTTP/1.1",
		Headers: [][2]string{{"Host", "api.example.com"}, {"User-Agent", "neo-test"}, {"Accept", "*/*"}}}
	base := judge(waf, attack)
	if base.status != 403 {
		t.Fatalf("the attack is not blocked: %v", base)
	}
	var sqli []int
	for _, id := range base.ids {
		if id >= 942000 && id < 943000 {
			sqli = append(sqli, id)
		}
	}
	if len(sqli) == 0 {
		t.Fatalf("no SQL injection rule matched: %v", base)
	}
	set := &ExclusionSet{List: []Exclusion{
		{Tags: []string{"attack-sqli"}},                                      // 0: every SQLi rule
		{Tags: []string{"attack-sqli"}, Args: []string{"q"}},                 // 1: only for q
		{Tags: []string{"attack-sqli"}, Args: []string{"x"}},                 // 2: only for x
		{Tags: []string{"attack-sqli"}, Args: []string{"Q*"}},                // 3: prefix, any case
		{Ranges: [][2]int{{sqli[0], sqli[0]}}},                               // 4: the first SQLi rule only
		{Tags: []string{"attack-sqli"}, Args: []string{"REQUEST_COOKIES:q"}}, // 5: a cookie, not q
	}}
	n := RegisterExclusions(set)
	defer UnregisterExclusions(n)
	for _, c := range []struct {
		mask    uint64
		blocked bool
	}{{1 << 0, false}, {1 << 1, false}, {1 << 2, true}, {1 << 3, false}, {1 << 5, true}, {1<<2 | 1<<5, true}} {
		v := judge(waf, withExclusions(attack, n, c.mask))
		if (v.status == 403) != c.blocked {
			t.Errorf("mask %b: %v, want blocked %v", c.mask, v, c.blocked)
		}
	}
	if v := judge(waf, withExclusions(attack, n, 1<<4)); slices.Contains(v.ids, sqli[0]) {
		t.Errorf("rule %d excluded by id still matched: %v", sqli[0], v)
	}
	if v := judge(waf, withExclusions(attack, n+1000, 1)); v.status != 403 {
		t.Errorf("an unknown set excluded something: %v", v)
	}
	UnregisterExclusions(n)
	if v := judge(waf, withExclusions(attack, n, 1)); v.status != 403 {
		t.Errorf("an unregistered set still applies: %v", v)
	}
}

// TestExactWithExclusions: stock Coraza and the accelerated WAF, both with
// the same exclusions, agree (matched rules, scores, status) at paranoia 1
// and 2, also when the excluded rules sit in CRS 920539's skip:1 window
// (920540, the paranoia gate 920014 after it) and on random exclusion sets.
func TestExactWithExclusions(t *testing.T) {
	reqs := randomRequests(t, 120, 21)
	fixed := []Exclusion{
		{Ranges: [][2]int{{920540, 920540}}},
		{Ranges: [][2]int{{920014, 920014}}},
		{Ranges: [][2]int{{920540, 920540}, {920014, 920014}}},
		{Ranges: [][2]int{{920540, 920540}}, Args: []string{"json.a"}},
		{Tags: []string{"attack-sqli"}},
		{Tags: []string{"paranoia-level/2"}},
		{Ranges: [][2]int{{941100, 941199}}, Args: []string{"p*"}},
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for pl := 1; pl <= 2; pl++ {
		d := fmt.Sprintf(DistinctKeysDirectives+`Include @coraza.conf-recommended
SecRuleEngine On
Include @crs-setup.conf.example
SecAction "id:900000,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level=%d"
%s%sInclude @owasp_crs/*.conf
%s`, pl, excludeDirective, SkipDirectivesBefore, SkipDirectivesAfter)
		stock, accel := buildWAF(t, d, false), buildWAF(t, d, true)
		set := &ExclusionSet{List: fixed}
		n := RegisterExclusions(set)
		type masked struct {
			r    request
			mask uint64
		}
		var cases []masked
		for _, r := range reqs {
			mask := uint64(1) << rng.IntN(len(fixed))
			if rng.IntN(3) == 0 {
				mask |= uint64(rng.IntN(1 << len(fixed)))
			}
			cases = append(cases, masked{r, mask})
		}
		// JSON bodies (920539 skips one rule for them) under every mask
		for _, body := range []string{`{"a":"%41"}`, `{"a":"<b>x</b>","p1":"1 union select 2"}`, `{"a":"été \u0041"}`, `{"a":"x\u0001y"}`} {
			for mask := uint64(1); mask < 1<<len(fixed); mask++ {
				cases = append(cases, masked{jsonRequest(body), mask})
			}
		}
		diffs := 0
		for i, c := range cases {
			r, mask := withExclusions(c.r, n, c.mask), c.mask
			want, got := judge(stock, r), judge(accel, r)
			if !want.equal(got) && !stockCanGive(stock, r, got) {
				if diffs++; diffs <= 5 {
					t.Errorf("paranoia %d, request %d (mask %b) %q body %q:\n stock       %v\n accelerated %v", pl, i, mask, r.URI, r.Body, want, got)
				}
			}
		}
		UnregisterExclusions(n)
	}
}

// FuzzExclusionHeader: whatever the header holds, the action neither
// panics nor excludes anything unless it names a registered set.
func FuzzExclusionHeader(f *testing.F) {
	for _, s := range []string{"1.1", "0.0", "18446744073709551615.1", "1.", ".1", "a.b", "1.1.1", "-1.1", ""} {
		f.Add(s)
	}
	waf := buildWAF(f, "SecRuleEngine On\n"+excludeDirective+SkipDirectivesBefore+
		`SecRule ARGS "@rx evil" "id:10,phase:1,deny,status:403,tag:'x'"`+"\n"+SkipDirectivesAfter, true)
	set := &ExclusionSet{List: []Exclusion{{Tags: []string{"x"}}}}
	n := RegisterExclusions(set)
	f.Fuzz(func(t *testing.T, h string) {
		r := request{Method: "GET", URI: "/?a=evil", Version: "HTTP/1.1", Headers: [][2]string{{"Host", "x"}, {ExclusionHeader, h}}}
		v := judge(waf, r)
		a, b, _ := strings.Cut(h, ".")
		k, err1 := strconv.ParseUint(a, 10, 64)
		m, err2 := strconv.ParseUint(b, 10, 64)
		named := err1 == nil && err2 == nil && k == n && m&1 != 0
		if !named && v.status != 403 {
			t.Fatalf("header %q excluded the rule", h)
		}
	})
}
