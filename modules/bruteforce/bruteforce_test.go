package bruteforce

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	_ "github.com/mholt/caddy-ratelimit"
	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.RunDir(t, "testdata/caddyfile_adapt") }

func TestCaddyfileErrors(t *testing.T) {
	adapttest.ExpectError(t, ":9000 {\n neo_login_user {\n  color x\n }\n}", `unknown subdirective "color"`)
	adapttest.ExpectError(t, ":9000 {\n neo_login_user {\n  max_body lots\n }\n}", "max_body")
	adapttest.ExpectError(t, ":9000 {\n neo_login_user a {\n  fields b\n }\n}", "inline and in the block")
	adapttest.ExpectError(t, ":9000 {\n neo_login_user {\n  max_body 1KiB\n  max_body 2KiB\n }\n}", `neo_login_user: duplicate subdirective "max_body"`)
	adapttest.ExpectError(t, ":9000 {\n neo_login_user {\n  fields\n }\n}", "fields: wrong argument count")
	adapttest.ExpectError(t, ":9000 {\n neo_login_user {\n  max_body\n }\n}", "max_body: wrong argument count")
}

func TestUserFromBody(t *testing.T) {
	fields := []string{"username", "email"}
	for name, tc := range map[string]struct{ kind, body, want string }{
		"form":           {"form", "username=Alice&password=x", "alice"},
		"form second":    {"form", "email=Bob%40Example.com&password=x", "bob@example.com"},
		"form order":     {"form", "email=b&username=a", "a"},
		"form none":      {"form", "password=x", ""},
		"form truncated": {"form", "username=carol&password=%zz", "carol"},
		"json":           {"json", `{"username":" Dave ","password":"x"}`, "dave"},
		"json non-str":   {"json", `{"username":5,"email":"e@x"}`, "e@x"},
		"json bad":       {"json", `{"username":`, ""},
		"json array":     {"json", `["username"]`, ""},
		"long":           {"form", "username=" + strings.Repeat("a", 1000), strings.Repeat("a", 256)},
	} {
		t.Run(name, func(t *testing.T) {
			if got := UserFromBody(tc.kind, []byte(tc.body), fields); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBodyUnchanged checks that the handlers after it see the whole body,
// also beyond the read limit.
func TestBodyUnchanged(t *testing.T) {
	h := LoginUser{MaxBody: 16}
	if err := h.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	body := "username=erin&password=" + strings.Repeat("p", 100)
	for _, ct := range []string{"application/x-www-form-urlencoded", "application/octet-stream"} {
		r := httptest.NewRequest("POST", "/auth/login", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		var got string
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			b, _ := io.ReadAll(r.Body)
			got = string(b)
			return nil
		})
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		if got != body {
			t.Fatalf("%s: body changed: %q", ct, got)
		}
		user, _ := repl.GetString(Placeholder)
		if want := map[bool]string{true: "erin", false: ""}[strings.HasPrefix(ct, "application/x-www")]; user != want {
			t.Fatalf("%s: user %q, want %q", ct, user, want)
		}
	}
}

func FuzzUserFromBody(f *testing.F) {
	f.Add("form", "username=a&b=c")
	f.Add("json", `{"username":"x"}`)
	f.Add("json", `{"username":"\u00ff\ud800"}`)
	f.Fuzz(func(t *testing.T, kind, body string) {
		u := UserFromBody(kind, []byte(body), []string{"username"})
		if len(u) > maxUserLen+3 || u != strings.TrimSpace(u) && len(u) < maxUserLen {
			t.Fatalf("bad user %q", u)
		}
	})
}
