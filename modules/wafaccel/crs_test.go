package wafaccel

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/projectneo/caddy-neo/internal/crstests"
)

// The CRS regression suite (go-ftw YAML format) shipped in the
// coraza-coreruleset module's tests/ folder, run in-process against a Coraza
// WAF with the CRS loaded the way go-ftw runs it (Coraza's own
// testing/coreruleset setup): detection-only, paranoia level 4, every rule
// that logs is recorded, and the recorded rule ids are compared with each
// stage's log expectations.

type (
	ftwTest     = crstests.Test
	ftwInput    = crstests.Input
	crsTestCase = crstests.Case
	request     = crstests.Request
)

func loadCRSTests(t testing.TB) []crsTestCase {
	t.Helper()
	cases, err := crstests.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

const crsTestingConfig = `
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecDefaultAction "phase:3,log,auditlog,pass"
SecDefaultAction "phase:4,log,auditlog,pass"
SecDefaultAction "phase:5,log,auditlog,pass"
SecAction "id:900005,\
  phase:1,\
  nolog,\
  pass,\
  ctl:ruleEngine=DetectionOnly,\
  ctl:ruleRemoveById=910000,\
  setvar:tx.blocking_paranoia_level=4,\
  setvar:tx.crs_validate_utf8_encoding=1,\
  setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,\
  setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,\
  setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"
`

// crsWAF is a WAF set up for the regression suite, with the ids of the
// logged rule matches collected per transaction.
type crsWAF struct {
	waf coraza.WAF
	mu  sync.Mutex
	ids map[string][]int
}

func newCRSWAF(t testing.TB) *crsWAF { return newCRSWAFSkip(t, false) }

// newCRSWAFSkip is newCRSWAF, with rule skipping set up when skip is set.
func newCRSWAFSkip(t testing.TB, skip bool) *crsWAF {
	t.Helper()
	before, after := "", ""
	if skip {
		before, after = SkipDirectivesBefore, SkipDirectivesAfter
	}
	w := &crsWAF{ids: map[string][]int{}}
	cfg := coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithErrorCallback(func(mr types.MatchedRule) {
			w.mu.Lock()
			w.ids[mr.TransactionID()] = append(w.ids[mr.TransactionID()], mr.Rule().ID())
			w.mu.Unlock()
		}).
		WithDirectives("Include @coraza.conf-recommended").
		WithDirectives(crsTestingConfig).
		WithDirectives("Include @crs-setup.conf.example").
		WithDirectives(before).
		WithDirectives("Include @owasp_crs/*.conf").
		WithDirectives(after)
	waf, err := coraza.NewWAF(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.waf = waf
	return w
}

// buildRequest turns a stage input into a request. An empty reason means
// the stage can be run.
func buildRequest(in ftwInput) (request, string) { return crstests.Build(in) }

// reflected is go-ftw's backend behaviour for /reflect: a JSON request body
// describes the response to send.
type reflected struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// run feeds one request (and the backend's response) through the WAF and
// returns the sorted ids of the rules that logged a match.
func (w *crsWAF) run(r request) []int {
	tx := w.waf.NewTransaction()
	tx.ProcessConnection("127.0.0.1", 40000, "127.0.0.1", 80)
	tx.ProcessURI(r.URI, r.Method, r.Version)
	for _, h := range r.Headers {
		tx.AddRequestHeader(h[0], h[1])
		if strings.EqualFold(h[0], "Host") {
			tx.SetServerName(h[1])
		}
	}
	tx.ProcessRequestHeaders()
	if len(r.Body) > 0 {
		_, _, _ = tx.WriteRequestBody(r.Body)
	}
	_, _ = tx.ProcessRequestBody()

	resp := reflected{Status: 200, Headers: map[string]string{"Content-Type": "text/html"}, Body: "<html><body>ok</body></html>"}
	if strings.HasPrefix(r.URI, "/reflect") {
		var ref reflected
		if json.Unmarshal(r.Body, &ref) == nil {
			if ref.Status != 0 {
				resp.Status = ref.Status
			}
			if ref.Headers != nil {
				resp.Headers = ref.Headers
			}
			resp.Body = ref.Body
		}
	}
	keys := make([]string, 0, len(resp.Headers))
	for k := range resp.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tx.AddResponseHeader(k, resp.Headers[k])
	}
	tx.ProcessResponseHeaders(resp.Status, "HTTP/1.1")
	if tx.IsResponseBodyAccessible() && tx.IsResponseBodyProcessable() {
		_, _, _ = tx.WriteResponseBody([]byte(resp.Body))
	}
	_, _ = tx.ProcessResponseBody()
	tx.ProcessLogging()
	id := tx.ID()
	_ = tx.Close()

	w.mu.Lock()
	ids := w.ids[id]
	delete(w.ids, id)
	w.mu.Unlock()
	slices.Sort(ids)
	return slices.Compact(ids)
}

// crsOutcome is the result of one test.
type crsOutcome struct {
	status string  // "met", "unmet" or "skipped"
	why    string  // for unmet and skipped
	ids    [][]int // per stage: the rule ids that logged
}

func (w *crsWAF) runTest(tc ftwTest) crsOutcome {
	var out crsOutcome
	out.status = "met"
	for i, st := range tc.Stages {
		r, skip := buildRequest(st.Input)
		if skip != "" {
			return crsOutcome{status: "skipped", why: skip}
		}
		ids := w.run(r)
		out.ids = append(out.ids, ids)
		o := st.Output
		if o.ExpectError {
			return crsOutcome{status: "skipped", why: "expects a connection error (needs a real server)", ids: out.ids}
		}
		if len(o.Log.ExpectIDs) == 0 && len(o.Log.NoExpectIDs) == 0 {
			return crsOutcome{status: "skipped", why: "checks only the status or response of a real backend", ids: out.ids}
		}
		for _, id := range o.Log.ExpectIDs {
			if _, ok := slices.BinarySearch(ids, id); !ok && out.status == "met" {
				out.status, out.why = "unmet", fmt.Sprintf("stage %d: rule %d expected, logged %v", i+1, id, ids)
			}
		}
		for _, id := range o.Log.NoExpectIDs {
			if _, ok := slices.BinarySearch(ids, id); ok && out.status == "met" {
				out.status, out.why = "unmet", fmt.Sprintf("stage %d: rule %d not expected but logged", i+1, id)
			}
		}
	}
	return out
}

func (w *crsWAF) runAll(cases []crsTestCase) map[string]crsOutcome {
	res := make(map[string]crsOutcome, len(cases))
	for _, c := range cases {
		res[c.Name] = w.runTest(c.Test)
	}
	return res
}

// minCRSMet is the number of regression tests this setup met when the runner
// was written (Coraza's own @rx and the accelerated one alike). Fewer means a
// verdict regressed.
const minCRSMet = 4633

// TestCRSRegression runs the whole CRS regression suite four times: with
// Coraza's own @rx operator, with the accelerated operator, with the
// accelerated operator and rule skipping (docs/wafaccel-skip.md), and with
// both configured but switched off. The rule ids logged by every stage of
// every test must be identical across the three runs.
func TestCRSRegression(t *testing.T) {
	cases := loadCRSTests(t)
	if len(cases) < 4000 {
		t.Fatalf("only %d CRS regression tests found", len(cases))
	}
	minMet := minCRSMet
	if testing.Short() {
		// the fast tier: every fifth test (the full suite runs them all);
		// met expectations scale with the sample, less 2% for its spread
		all := len(cases)
		sample := cases[:0:0]
		for i := 0; i < all; i += 5 {
			sample = append(sample, cases[i])
		}
		cases = sample
		minMet = minCRSMet * len(cases) / all * 98 / 100
	}

	var stock, accel, off, skip map[string]crsOutcome
	start := time.Now()
	withCorazaRx(t, func() { stock = newCRSWAF(t).runAll(cases) })
	tStock := time.Since(start)

	start = time.Now()
	accel = newCRSWAF(t).runAll(cases)
	tAccel := time.Since(start)

	start = time.Now()
	skip = newCRSWAFSkip(t, true).runAll(cases)
	tSkip := time.Since(start)

	prev := SetEnabled(false)
	start = time.Now()
	off = newCRSWAFSkip(t, true).runAll(cases)
	tOff := time.Since(start)
	SetEnabled(prev)

	counts := map[string]int{}
	skipReasons := map[string]int{}
	var unmet []string
	diffs := 0
	for _, c := range cases {
		s, a, o, k := stock[c.Name], accel[c.Name], off[c.Name], skip[c.Name]
		if !equalOutcome(s, a) || !equalOutcome(s, o) || !equalOutcome(s, k) {
			diffs++
			if diffs <= 20 {
				t.Errorf("%s: verdicts differ: coraza %s %v, accelerated %s %v, accelerated with rule skipping %s %v, switched off %s %v",
					c.Name, s.status, s.ids, a.status, a.ids, k.status, k.ids, o.status, o.ids)
			}
		}
		counts[s.status]++
		switch s.status {
		case "skipped":
			skipReasons[s.why]++
		case "unmet":
			unmet = append(unmet, c.Name+": "+s.why)
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d tests differ between Coraza's @rx and the accelerated one", diffs, len(cases))
	}
	t.Logf("CRS regression suite: %d tests; met %d, unmet %d, skipped %d; identical with and without acceleration: %v",
		len(cases), counts["met"], counts["unmet"], counts["skipped"], diffs == 0)
	t.Logf("time: coraza rx %v, accelerated %v, accelerated with rule skipping %v, switched off (skipping configured) %v",
		tStock.Round(time.Millisecond), tAccel.Round(time.Millisecond), tSkip.Round(time.Millisecond), tOff.Round(time.Millisecond))
	for why, n := range skipReasons {
		t.Logf("skipped %d: %s", n, why)
	}
	if testing.Verbose() {
		for _, u := range unmet {
			t.Logf("unmet %s", u)
		}
	}
	if counts["met"] < minMet {
		t.Errorf("only %d tests met their expectations, want at least %d", counts["met"], minMet)
	}
}

func equalOutcome(a, b crsOutcome) bool {
	if a.status != b.status || a.why != b.why || len(a.ids) != len(b.ids) {
		return false
	}
	for i := range a.ids {
		if !slices.Equal(a.ids[i], b.ids[i]) {
			return false
		}
	}
	return true
}
