package wafaccel

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// Exact semantics: for every request, the accelerated WAF (our operators and
// rule skipping) gives the same matched rules (logged or not), the same
// anomaly scores and the same status as stock Coraza (Coraza's own
// operators, no skipping), at every paranoia level and with rule sets that
// use skip, skipAfter/SecMarker, chains and ctl:ruleRemove*.

// verdict is everything compared for one request.
type verdict struct {
	ids    []int  // every matched rule but the neoSkip SecActions, sorted
	status int    // the interruption's status, 0 without one
	scores string // every TX variable named *score*, sorted
}

func (v verdict) String() string {
	return fmt.Sprintf("status %d, rules %v, scores %s", v.status, v.ids, v.scores)
}

func (v verdict) equal(o verdict) bool {
	return v.status == o.status && v.scores == o.scores && slices.Equal(v.ids, o.ids)
}

// judge runs one request through waf.
func judge(waf coraza.WAF, r request) verdict {
	tx := waf.NewTransaction()
	defer tx.Close()
	tx.ProcessConnection("127.0.0.1", 40000, "127.0.0.1", 80)
	tx.ProcessURI(r.URI, r.Method, r.Version)
	for _, h := range r.Headers {
		tx.AddRequestHeader(h[0], h[1])
	}
	tx.ProcessRequestHeaders()
	if len(r.Body) > 0 && tx.Interruption() == nil {
		_, _, _ = tx.WriteRequestBody(r.Body)
	}
	if tx.Interruption() == nil {
		_, _ = tx.ProcessRequestBody()
	}
	if tx.Interruption() == nil {
		// A response, for the rules of phases 3 and 4: one of a few, by
		// the request.
		resp := responses[len(r.URI)%len(responses)]
		tx.AddResponseHeader("Content-Type", resp[0])
		if resp[2] != "" {
			tx.AddResponseHeader("Content-Encoding", resp[2])
		}
		tx.ProcessResponseHeaders(200, "HTTP/1.1")
		if tx.IsResponseBodyAccessible() && tx.IsResponseBodyProcessable() {
			_, _, _ = tx.WriteResponseBody([]byte(resp[1]))
		}
		_, _ = tx.ProcessResponseBody()
	}
	tx.ProcessLogging()
	var v verdict
	for _, m := range tx.MatchedRules() {
		if id := m.Rule().ID(); id < 900950 || id > 900979 { // but the neo actions' SecActions
			v.ids = append(v.ids, id)
		}
	}
	slices.Sort(v.ids)
	v.ids = slices.Compact(v.ids)
	if it := tx.Interruption(); it != nil {
		v.status = it.Status
	}
	var scores []string
	if st, ok := tx.(plugintypes.TransactionState); ok {
		for _, md := range st.Collection(variables.TX).FindAll() {
			if strings.Contains(md.Key(), "score") {
				scores = append(scores, md.Key()+"="+md.Value())
			}
		}
	}
	slices.Sort(scores)
	v.scores = strings.Join(scores, " ")
	return v
}

// responses are the responses judge has the WAF inspect: content type,
// body, content encoding.
var responses = [][3]string{
	{"application/json", `{"ok":true}`, ""},
	{"text/html", "<html><head><title>Index of /</title></head><body><h1>Index of /</h1></body></html>", ""},
	{"text/plain", "Warning: mysql_connect(): Access denied for user in /var/www/x.php on line 3", ""},
	{"text/html", "<html><body>ok</body></html>", "gzip"},
	{"text/html", "", ""},
}

// crsAt builds a blocking WAF with the CRS at the given paranoia level;
// accelerated: our operators and rule skipping, otherwise stock Coraza.
func crsAt(t testing.TB, paranoia int, accelerated bool) coraza.WAF {
	t.Helper()
	d := fmt.Sprintf(DistinctKeysDirectives+`Include @coraza.conf-recommended
SecRuleEngine On
Include @crs-setup.conf.example
SecAction "id:900000,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level=%d"
SecAction "id:900200,phase:1,pass,nolog,t:none,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
%s
Include @owasp_crs/*.conf
%s`, paranoia, SkipDirectivesBefore, SkipDirectivesAfter)
	return buildWAF(t, d, accelerated)
}

// buildWAF builds a WAF from directives holding the skip directives: with
// our operators and skipping when accelerated, else with Coraza's operators
// and the neoSkip rules taken out (neoRuleInfo, a metadata action that does
// nothing per request, stays: neoExclude resolves tags with it).
func buildWAF(t testing.TB, d string, accelerated bool) coraza.WAF {
	t.Helper()
	var waf coraza.WAF
	var err error
	build := func() {
		waf, err = coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(d))
	}
	if accelerated {
		build()
	} else {
		d = strings.Replace(d, SkipDirectivesBefore, "", 1)
		withCorazaRx(t, build)
	}
	if err != nil {
		t.Fatal(err)
	}
	return waf
}

func jsonRequest(body string) request {
	return request{Method: "POST", URI: "/api/items", Version: "HTTP/1.1", Body: []byte(body), Headers: [][2]string{
		{"Host", "api.example.com"}, {"User-Agent", "neo-test"}, {"Accept", "application/json"},
		{"Content-Type", "application/json"}, {"Content-Length", fmt.Sprint(len(body))}}}
}

// TestSkipWindowJSON is the smallest case of the skip:N bug: CRS 920539
// skips 920540 for JSON bodies; with 920540 removed by rule skipping the
// skip landed on 920014 (the paranoia-2 gate) and paranoia-2 rules ran and
// logged (920230) at paranoia 1.
func TestSkipWindowJSON(t *testing.T) {
	r := jsonRequest(`{"a":"%41"}`)
	for pl := 1; pl <= 4; pl++ {
		stock, accel := judge(crsAt(t, pl, false), r), judge(crsAt(t, pl, true), r)
		if !stock.equal(accel) {
			t.Errorf("paranoia %d: stock Coraza %v; accelerated %v", pl, stock, accel)
		}
		if pl == 1 && slices.Contains(stock.ids, 920230) {
			t.Errorf("paranoia 1: stock Coraza logs the paranoia-2 rule 920230: the case does not test the skip")
		}
	}
}

// TestExactCRSParanoia compares stock Coraza and the accelerated WAF, both
// blocking, at paranoia levels 1 to 4, on random requests built from the CRS
// regression payloads (as TestSkipDifferential) and on JSON bodies: matched
// rules, anomaly scores and status must be equal for every request.
func TestExactCRSParanoia(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 80
	}
	reqs := randomRequests(t, n, 11)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < n/3; i++ {
		reqs = append(reqs, jsonRequest(fmt.Sprintf(`{"a":%q,"n":%d}`, reqs[rng.IntN(len(reqs))].URI, i)))
	}
	for pl := 1; pl <= 4; pl++ {
		stock, accel := crsAt(t, pl, false), crsAt(t, pl, true)
		diffs, nondet, blocked := 0, 0, 0
		for i, r := range reqs {
			want, got := judge(stock, r), judge(accel, r)
			if want.status != 0 {
				blocked++
			}
			if want.equal(got) {
				continue
			}
			if stockCanGive(stock, r, got) {
				nondet++ // Coraza's own nondeterminism, see plainCanGive
				continue
			}
			if diffs++; diffs <= 5 {
				t.Errorf("paranoia %d, request %d %s %q %q body %q:\n stock       %v\n accelerated %v", pl, i, r.Method, r.URI, r.Headers, r.Body, want, got)
			}
		}
		if diffs > 0 {
			t.Errorf("paranoia %d: %d of %d requests differ", pl, diffs, len(reqs))
		}
		t.Logf("paranoia %d: %d requests, %d blocked, %d differed once but stock Coraza gives the same on a rerun", pl, len(reqs), blocked, nondet)
		if blocked == 0 || blocked == len(reqs) {
			t.Errorf("paranoia %d: %d of %d blocked: the requests do not tell", pl, blocked, len(reqs))
		}
	}
}

// stockCanGive reports whether waf, run again on r up to 40 times, ever
// gives exactly v.
func stockCanGive(waf coraza.WAF, r request, v verdict) bool {
	for k := 0; k < 40; k++ {
		if judge(waf, r).equal(v) {
			return true
		}
	}
	return false
}

// TestExactSkipRuleSets builds random rule sets meant to stress rule
// skipping: skip:N rules (on a request header) in front of candidate rules
// (phrases in the arguments), ctl:ruleRemoveById/ByTag rules removing rules
// inside and around the windows, skipAfter to SecMarkers, chains, rules of
// both phases, and tenant exclusions (neoExclude) of rules and arguments;
// random requests turn each on or off. Stock Coraza and the
// accelerated WAF must agree on matched rules, score and status.
func TestExactSkipRuleSets(t *testing.T) {
	sets, perSet := 40, 60
	if testing.Short() {
		sets = 10
	}
	rng := rand.New(rand.NewPCG(5, 6))
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
	skipped, compared := 0, 0
	for s := 0; s < sets; s++ {
		rules, markers := randomRuleSet(rng, words)
		d := "SecRuleEngine On\nSecRequestBodyAccess On\n" + excludeDirective + SkipDirectivesBefore + rules + SkipDirectivesAfter
		stock, accel := buildWAF(t, d, false), buildWAF(t, d, true)
		_ = markers
		// exclusions as a tenant's: rule ids and tags, whole or per argument
		var ex []Exclusion
		for k := 0; k < 6; k++ {
			e := Exclusion{Ranges: [][2]int{{100 + rng.IntN(30), 0}}}
			e.Ranges[0][1] = e.Ranges[0][0] + rng.IntN(3)
			if rng.IntN(3) == 0 {
				e = Exclusion{Tags: []string{[]string{"grp-a", "grp-b"}[rng.IntN(2)]}}
			}
			if rng.IntN(3) == 0 {
				e.Args = []string{fmt.Sprintf("a%d", 1+rng.IntN(3))}
			}
			ex = append(ex, e)
		}
		setN := RegisterExclusions(&ExclusionSet{List: ex})
		for i := 0; i < perSet; i++ {
			q := url.Values{}
			for k := rng.IntN(4); k > 0; k-- {
				q.Add(fmt.Sprintf("a%d", k), words[rng.IntN(len(words))]+" "+words[rng.IntN(len(words))])
			}
			r := request{Method: "GET", URI: "/x?" + q.Encode(), Version: "HTTP/1.1", Headers: [][2]string{{"Host", "example.com"}}}
			for k := 0; k < 4; k++ {
				if rng.IntN(2) == 0 {
					r.Headers = append(r.Headers, [2]string{fmt.Sprintf("X-S%d", k), "on"})
				}
			}
			if rng.IntN(2) == 0 {
				body := url.Values{"b": {words[rng.IntN(len(words))]}}.Encode()
				r.Method, r.Body = "POST", []byte(body)
				r.Headers = append(r.Headers, [2]string{"Content-Type", "application/x-www-form-urlencoded"}, [2]string{"Content-Length", fmt.Sprint(len(body))})
			}
			if rng.IntN(2) == 0 {
				r = withExclusions(r, setN, uint64(1+rng.IntN(63)))
			}
			want, got := judge(stock, r), judge(accel, r)
			compared++
			if slices.ContainsFunc(want.ids, func(id int) bool { return id >= 500 && id < 600 }) {
				skipped++ // a skip rule matched
			}
			if !want.equal(got) {
				t.Fatalf("rule set %d, request %q %q body %q:\n stock       %v\n accelerated %v\nrules:\n%s\nexclusions: %+v", s, r.URI, r.Headers, r.Body, want, got, rules, ex)
			}
		}
		UnregisterExclusions(setN)
	}
	t.Logf("%d rule sets, %d requests, %d with a skip rule matching", sets, compared, skipped)
	if skipped < compared/4 {
		t.Errorf("only %d of %d requests had a skip rule match", skipped, compared)
	}
}

// randomRuleSet returns a random rule set: candidates (ids 100..499: @rx or
// @pm on ARGS, single rules or chain heads, scoring), skip rules (500..599,
// on the X-S<k> headers), ctl removal rules (600..699) and skipAfter rules
// (700..799) with their SecMarkers, in phases 1 and 2.
func randomRuleSet(rng *rand.Rand, words []string) (string, []string) {
	var b strings.Builder
	var markers []string
	id := map[string]int{"cand": 100, "skip": 500, "ctl": 600, "after": 700, "tx": 800}
	next := func(k string) int { id[k]++; return id[k] }
	var cands []int
	n := 12 + rng.IntN(20)
	for i := 0; i < n; i++ {
		phase := 1 + rng.IntN(2)
		target := "ARGS"
		if phase == 2 && rng.IntN(3) == 0 {
			target = "ARGS_POST"
		}
		if rng.IntN(4) == 0 {
			// TX comparisons (gates, scores) and the rules that set their
			// variables, in phase 1 or (sometimes) in the same phase
			g := rng.IntN(3)
			switch rng.IntN(3) {
			case 0:
				fmt.Fprintf(&b, "SecRule REQUEST_HEADERS:X-S%d \"@streq on\" \"id:%d,phase:%d,pass,t:none,setvar:tx.g%d=%d\"\n", rng.IntN(4), next("tx"), 1+rng.IntN(4)/3, g, rng.IntN(3))
			case 1:
				op := []string{"lt", "le", "gt", "ge", "eq"}[rng.IntN(5)]
				target := fmt.Sprintf("TX:g%d", g)
				if rng.IntN(4) == 0 {
					target = "&" + target
				}
				flow := fmt.Sprintf("setvar:'tx.score=+%d'", id["tx"]+1)
				if len(markers) > 0 && rng.IntN(2) == 0 {
					flow = "skipAfter:" + markers[rng.IntN(len(markers))]
				}
				fmt.Fprintf(&b, "SecRule %s \"@%s %d\" \"id:%d,phase:%d,pass,%s\"\n", target, op, rng.IntN(3), next("tx"), phase, flow)
			default:
				fmt.Fprintf(&b, "SecRule TX:g%d \"@ge %%{tx.g%d}\" \"id:%d,phase:%d,pass,t:none\"\n", g, (g+1)%3, next("tx"), phase)
			}
			continue
		}
		switch k := rng.IntN(10); {
		case k < 5:
			c := next("cand")
			cands = append(cands, c)
			op := fmt.Sprintf("@rx \\b%s\\b", words[rng.IntN(len(words))])
			if rng.IntN(3) == 0 {
				op = fmt.Sprintf("@pm %s %s", words[rng.IntN(len(words))], words[rng.IntN(len(words))])
			}
			tag := []string{"grp-a", "grp-b"}[rng.IntN(2)]
			if rng.IntN(4) == 0 {
				fmt.Fprintf(&b, "SecRule %s \"%s\" \"id:%d,phase:%d,pass,t:none,t:lowercase,tag:'%s',chain\"\n  SecRule ARGS \"@rx %s\" \"t:none,setvar:'tx.score=+%d'\"\n",
					target, op, c, phase, tag, words[rng.IntN(len(words))], c)
			} else {
				fmt.Fprintf(&b, "SecRule %s \"%s\" \"id:%d,phase:%d,pass,t:none,t:lowercase,tag:'%s',setvar:'tx.score=+%d'\"\n", target, op, c, phase, tag, c)
			}
		case k < 7:
			fmt.Fprintf(&b, "SecRule REQUEST_HEADERS:X-S%d \"@streq on\" \"id:%d,phase:%d,pass,t:none,skip:%d\"\n", rng.IntN(4), next("skip"), phase, 1+rng.IntN(3))
		case k < 8 && len(cands) > 0:
			what := fmt.Sprintf("ruleRemoveById=%d", cands[rng.IntN(len(cands))]+rng.IntN(3))
			switch rng.IntN(3) {
			case 0:
				c := cands[rng.IntN(len(cands))]
				what = fmt.Sprintf("ruleRemoveById=%d-%d", c, c+rng.IntN(3))
			case 1:
				what = "ruleRemoveByTag=" + []string{"grp-a", "grp-b"}[rng.IntN(2)]
			}
			fmt.Fprintf(&b, "SecRule REQUEST_HEADERS:X-S%d \"@streq on\" \"id:%d,phase:%d,pass,t:none,ctl:%s\"\n", rng.IntN(4), next("ctl"), phase, what)
		case k < 9:
			m := fmt.Sprintf("M%d", len(markers))
			markers = append(markers, m)
			fmt.Fprintf(&b, "SecRule REQUEST_HEADERS:X-S%d \"@streq on\" \"id:%d,phase:%d,pass,t:none,skipAfter:%s\"\n", rng.IntN(4), next("after"), phase, m)
		default:
			if len(markers) > 0 {
				fmt.Fprintf(&b, "SecMarker %s\n", markers[rng.IntN(len(markers))])
			}
		}
	}
	for _, m := range markers {
		fmt.Fprintf(&b, "SecMarker %s\n", m)
	}
	return b.String(), markers
}
