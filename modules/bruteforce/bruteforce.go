// Package bruteforce provides neo_login_user, a handler that reads the user
// name of a login attempt from the request body and publishes it as the
// placeholder {neo.login.user}, so that a rate limit can count login attempts
// per user name whatever the client address (brute force and credential
// stuffing from many addresses).
//
// It reads at most MaxBody bytes of a POST body whose type is
// application/x-www-form-urlencoded or JSON, and puts them back in front of the
// rest of the body, so the handlers after it see the body unchanged. Other
// requests pass untouched and the placeholder is empty.
package bruteforce

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(LoginUser{})
}

// Placeholder is the name of the placeholder the handler sets.
const Placeholder = "neo.login.user"

// maxUserLen bounds the published user name.
const maxUserLen = 256

// LoginUser is the neo_login_user handler.
//
// Placeholders: {neo.login.user}, the user name of the login attempt,
// lowercased and trimmed (at most 256 bytes), or empty.
type LoginUser struct {
	// Fields are the form or JSON field names that hold the user name, tried
	// in order. Default: username, user, login, email.
	Fields []string `json:"fields,omitempty"`
	// MaxBody is how many bytes of the body are read to find the field.
	// Default: 65536.
	MaxBody int64 `json:"max_body,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (LoginUser) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_login_user",
		New: func() caddy.Module { return new(LoginUser) },
	}
}

// Provision fills defaults.
func (h *LoginUser) Provision(caddy.Context) error {
	if len(h.Fields) == 0 {
		h.Fields = []string{"username", "user", "login", "email"}
	}
	if h.MaxBody == 0 {
		h.MaxBody = 64 << 10
	}
	return nil
}

// Validate checks the configuration.
func (h *LoginUser) Validate() error {
	if h.MaxBody < 0 || h.MaxBody > 16<<20 {
		return fmt.Errorf("max_body: want 1 byte to 16 MiB, got %d", h.MaxBody)
	}
	for i, f := range h.Fields {
		if f == "" {
			return fmt.Errorf("fields[%d]: empty field name", i)
		}
	}
	return nil
}

// ServeHTTP publishes the placeholder and calls the next handler.
func (h LoginUser) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(Placeholder, "")
	if r.Method != http.MethodPost || r.Body == nil {
		return next.ServeHTTP(w, r)
	}
	kind := bodyKind(r.Header.Get("Content-Type"))
	if kind == "" {
		return next.ServeHTTP(w, r)
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody))
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading login body: %w", err))
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	repl.Set(Placeholder, UserFromBody(kind, buf, h.Fields))
	return next.ServeHTTP(w, r)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// bodyKind returns "form", "json" or "" for a Content-Type.
func bodyKind(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	switch {
	case mt == "application/x-www-form-urlencoded":
		return "form"
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	}
	return ""
}

// UserFromBody returns the first of fields found in body (kind "form" or
// "json"), normalised: trimmed, lowercased, at most 256 bytes of valid UTF-8.
// A body cut short by the read limit may still yield a name from its part.
func UserFromBody(kind string, body []byte, fields []string) string {
	var user string
	switch kind {
	case "form":
		vals, _ := url.ParseQuery(string(body)) // keeps the pairs parsed before an error
		for _, f := range fields {
			if v := vals.Get(f); v != "" {
				user = v
				break
			}
		}
	case "json":
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil {
			return ""
		}
		for _, f := range fields {
			var s string
			if raw, ok := obj[f]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
				user = s
				break
			}
		}
	}
	return normalise(user)
}

func normalise(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > maxUserLen {
		s = s[:maxUserLen]
	}
	return strings.ToValidUTF8(s, string(utf8.RuneError))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*LoginUser)(nil)
	_ caddy.Validator             = (*LoginUser)(nil)
	_ caddyhttp.MiddlewareHandler = (*LoginUser)(nil)
)
