package logredact

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/corazawaf/coraza/v3"

	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_log_fingerprints {\n  color x\n }\n}", `unknown subdirective "color"`)
	adapttest.ExpectError(t, ":9000 {\n neo_log_fingerprints a {\n  headers b\n }\n}", "inline and in the block")
	adapttest.ExpectError(t, ":9000 {\n neo_log_fingerprints {\n  key\n }\n}", "key: wrong argument count")
}

const (
	token   = "eyJhbGciOiJFUzI1NiJ9.secret-token-123"
	session = "topsecretsessionvalue"
	basic   = "dXNlcjpodW50ZXIy"
)

// A blocked request's audit line (a real Coraza WAF, format neo_json) has no
// credential left, in its headers or in the matched rules' data, and has
// their fingerprints instead.
func TestAuditLogRedacted(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.log")
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithDirectives(`
SecRuleEngine On
SecAuditEngine RelevantOnly
SecAuditLogRelevantStatus "^403$"
SecAuditLogParts ABHZ
SecAuditLogType Serial
SecAuditLogFormat neo_json
SecAuditLog ` + audit + `
SecRule REQUEST_HEADERS:Cookie "@contains evil" "id:1,phase:1,pass,log,msg:'cookie %{MATCHED_VAR}',logdata:'%{MATCHED_VAR}'"
SecRule REQUEST_HEADERS:Authorization "@contains secret" "id:2,phase:1,deny,status:403,log,logdata:'auth %{MATCHED_VAR}'"
`))
	if err != nil {
		t.Fatal(err)
	}
	tx := waf.NewTransaction()
	tx.ProcessConnection("192.0.2.1", 1234, "192.0.2.2", 443)
	tx.ProcessURI("/orders/?q=1", "GET", "HTTP/1.1")
	tx.AddRequestHeader("Host", "acme.apps.localhost")
	tx.AddRequestHeader("Authorization", "Bearer "+token)
	tx.AddRequestHeader("Proxy-Authorization", "Basic "+basic)
	tx.AddRequestHeader("Cookie", "session="+session+"; theme=evilish")
	tx.AddRequestHeader("User-Agent", "test")
	if it := tx.ProcessRequestHeaders(); it == nil {
		t.Fatal("the request was not blocked")
	}
	tx.ProcessLogging()
	tx.Close()
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	line := string(data)
	for _, secret := range []string{token, session, basic, "secret-token"} {
		if strings.Contains(line, secret) {
			t.Errorf("the audit line holds %q: %s", secret, line)
		}
	}
	for _, want := range []string{"Bearer " + Fingerprint(token), "Basic " + Fingerprint(basic), "session=" + Fingerprint(session), "theme=" + Fingerprint("evilish"), `"acme.apps.localhost"`} {
		if !strings.Contains(line, want) {
			t.Errorf("the audit line lacks %q: %s", want, line)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
}

// The access log's fields: the redacted forms of the request's and the
// response's credential headers, under a configured key.
func TestHandlerFingerprints(t *testing.T) {
	h := &Handler{Key: "0123456789abcdef0123456789abcdef"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer setConfig(processKey, DefaultHeaders)
	if Fingerprint(token) == (&config{key: processKey}).fingerprint(token) {
		t.Fatal("the configured key is not used")
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Cookie", "session="+session)
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Add("Set-Cookie", "id="+session+"; Path=/; HttpOnly")
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := current.Load()
	got := append(fingerprints(c, r.Header, ""), fingerprints(c, w.Header(), "resp_")...)
	want := []string{"authorization", "Bearer " + Fingerprint(token), "cookie", "session=" + Fingerprint(session),
		"resp_set-cookie", "id=" + Fingerprint(session) + "; Path=/; HttpOnly"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q, want %q", got, want)
	}
}

// FuzzRedactValue: a redacted value never holds the original value, the
// token of an Authorization value or a cookie's value (of at least
// minSecret bytes), and is the same for the same input.
func FuzzRedactValue(f *testing.F) {
	for _, s := range [][2]string{{"authorization", "Bearer abcdefgh"}, {"cookie", "a=secretvalue; b=x"}, {"set-cookie", "id=secretvalue; Path=/"}, {"cookie", ";;=;"}} {
		f.Add(s[0], s[1])
	}
	c := current.Load()
	f.Fuzz(func(t *testing.T, name, v string) {
		name = strings.ToLower(name)
		secrets := map[string]string{}
		out := c.redactValue(name, v, secrets)
		if out != c.redactValue(name, v, map[string]string{}) {
			t.Fatal("not deterministic")
		}
		if len(v) >= minSecret && strings.Contains(out, v) && !strings.Contains(c.fingerprint(v), v) {
			t.Fatalf("%s: %q redacted as %q", name, v, out)
		}
		for secret := range secrets {
			if strings.Contains(out, secret) && !strings.Contains(out, "fp:"+secret) && !isAttr(out, secret) {
				t.Fatalf("%s: secret %q left in %q", name, secret, out)
			}
		}
	})
}

// isAttr reports whether secret appears in out only as part of a fingerprint
// or of a Set-Cookie attribute (kept on purpose).
func isAttr(out, secret string) bool {
	_, attrs, ok := strings.Cut(out, ";")
	return ok && strings.Contains(attrs, secret) || strings.Contains(strings.ReplaceAll(out, "fp:", ""), secret) && strings.HasPrefix(secret, "fp")
}
