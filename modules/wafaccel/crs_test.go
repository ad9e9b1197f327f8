package wafaccel

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
	"gopkg.in/yaml.v3"
)

// The CRS regression suite (go-ftw YAML format) shipped in the
// coraza-coreruleset module's tests/ folder, run in-process against a Coraza
// WAF with the CRS loaded the way go-ftw runs it (Coraza's own
// testing/coreruleset setup): detection-only, paranoia level 4, every rule
// that logs is recorded, and the recorded rule ids are compared with each
// stage's log expectations.

// ftwFile is one go-ftw test file.
type ftwFile struct {
	RuleID int       `yaml:"rule_id"`
	Tests  []ftwTest `yaml:"tests"`
}

type ftwTest struct {
	TestID int        `yaml:"test_id"`
	Desc   string     `yaml:"desc"`
	Stages []ftwStage `yaml:"stages"`
}

type ftwStage struct {
	Input  ftwInput  `yaml:"input"`
	Output ftwOutput `yaml:"output"`
}

type ftwInput struct {
	Method              *string           `yaml:"method"`
	URI                 *string           `yaml:"uri"`
	Version             *string           `yaml:"version"`
	Headers             map[string]string `yaml:"headers"`
	Data                *string           `yaml:"data"`
	EncodedRequest      string            `yaml:"encoded_request"`
	AutocompleteHeaders *bool             `yaml:"autocomplete_headers"`
}

type ftwOutput struct {
	Status      int  `yaml:"status"`
	ExpectError bool `yaml:"expect_error"`
	Log         struct {
		ExpectIDs   []int `yaml:"expect_ids"`
		NoExpectIDs []int `yaml:"no_expect_ids"`
	} `yaml:"log"`
	ResponseContains string `yaml:"response_contains"`
}

// crsTestCase is one test with a stable name.
type crsTestCase struct {
	name string // e.g. 942100-1
	test ftwTest
}

func crsTestsDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/corazawaf/coraza-coreruleset/v4").Output()
	if err != nil {
		t.Fatalf("locating coraza-coreruleset: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "tests")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("CRS regression tests not found: %v", err)
	}
	return dir
}

func loadCRSTests(t testing.TB) []crsTestCase {
	t.Helper()
	var cases []crsTestCase
	err := filepath.WalkDir(crsTestsDir(t), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var f ftwFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, tc := range f.Tests {
			cases = append(cases, crsTestCase{name: fmt.Sprintf("%d-%d", f.RuleID, tc.TestID), test: tc})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].name < cases[j].name })
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

// request is a test stage's request, as go-ftw would send it.
type request struct {
	method, uri, version string
	headers              [][2]string
	body                 []byte
}

// buildRequest turns a stage input into a request. An empty reason means
// the stage can be run.
func buildRequest(in ftwInput) (request, string) {
	if in.EncodedRequest != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(in.EncodedRequest, "\n", ""))
		if err != nil {
			return request{}, "undecodable encoded_request"
		}
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return request{}, "encoded_request is not an HTTP/1.x request Go can parse"
		}
		r := request{method: hr.Method, uri: hr.RequestURI, version: hr.Proto}
		for k, vs := range hr.Header {
			for _, v := range vs {
				r.headers = append(r.headers, [2]string{k, v})
			}
		}
		if hr.Host != "" {
			r.headers = append(r.headers, [2]string{"Host", hr.Host})
		}
		if len(hr.TransferEncoding) > 0 {
			r.headers = append(r.headers, [2]string{"Transfer-Encoding", strings.Join(hr.TransferEncoding, ",")})
		}
		r.body, _ = io.ReadAll(hr.Body)
		return r, ""
	}
	r := request{method: "GET", uri: "/", version: "HTTP/1.1"}
	if in.Method != nil {
		r.method = *in.Method
	}
	if in.URI != nil {
		r.uri = *in.URI
	}
	if in.Version != nil {
		r.version = *in.Version
	}
	keys := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasCL := false
	for _, k := range keys {
		r.headers = append(r.headers, [2]string{k, in.Headers[k]})
		hasCL = hasCL || strings.EqualFold(k, "Content-Length")
	}
	if in.Data != nil {
		r.body = []byte(*in.Data)
	}
	autocomplete := in.AutocompleteHeaders == nil || *in.AutocompleteHeaders
	if autocomplete && !hasCL && len(r.body) > 0 {
		r.headers = append(r.headers, [2]string{"Content-Length", fmt.Sprint(len(r.body))})
	}
	return r, ""
}

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
	tx.ProcessURI(r.uri, r.method, r.version)
	for _, h := range r.headers {
		tx.AddRequestHeader(h[0], h[1])
		if strings.EqualFold(h[0], "Host") {
			tx.SetServerName(h[1])
		}
	}
	tx.ProcessRequestHeaders()
	if len(r.body) > 0 {
		_, _, _ = tx.WriteRequestBody(r.body)
	}
	_, _ = tx.ProcessRequestBody()

	resp := reflected{Status: 200, Headers: map[string]string{"Content-Type": "text/html"}, Body: "<html><body>ok</body></html>"}
	if strings.HasPrefix(r.uri, "/reflect") {
		var ref reflected
		if json.Unmarshal(r.body, &ref) == nil {
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
		res[c.name] = w.runTest(c.test)
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
		s, a, o, k := stock[c.name], accel[c.name], off[c.name], skip[c.name]
		if !equalOutcome(s, a) || !equalOutcome(s, o) || !equalOutcome(s, k) {
			diffs++
			if diffs <= 20 {
				t.Errorf("%s: verdicts differ: coraza %s %v, accelerated %s %v, accelerated with rule skipping %s %v, switched off %s %v",
					c.name, s.status, s.ids, a.status, a.ids, k.status, k.ids, o.status, o.ids)
			}
		}
		counts[s.status]++
		switch s.status {
		case "skipped":
			skipReasons[s.why]++
		case "unmet":
			unmet = append(unmet, c.name+": "+s.why)
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
	if counts["met"] < minCRSMet {
		t.Errorf("only %d tests met their expectations, want at least %d", counts["met"], minCRSMet)
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
