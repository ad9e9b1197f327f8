package logredact

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the neo_log_fingerprints handler: it adds to the request's
// access log line the field "credential_fingerprints", an object with the
// redacted form of each credential header of the request (lowercase name)
// and of the response ("resp_" + lowercase name), for example
// {"authorization": "Bearer fp:3f2a…", "cookie": "session=fp:91c0…"}.
// Caddy's access log shows those headers' values as REDACTED; the
// fingerprints let an operator tell requests of one credential apart and
// find the same request in the WAF's audit log (format neo_json).
//
// Its configuration (Headers, Key) is also the one the audit log format
// uses; the last config loaded sets it for the process.
type Handler struct {
	// Headers are the credential headers. Default: Authorization,
	// Proxy-Authorization, Cookie, Set-Cookie.
	Headers []string `json:"headers,omitempty"`
	// Key is the fingerprints' HMAC key (at least 16 bytes; hex or text).
	// Global placeholders are replaced at load ({env.NAME}); empty after
	// that means the default. Default: random per process (fingerprints
	// then correlate within one process only).
	Key string `json:"key,omitempty"`

	key string // Key with placeholders replaced
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.neo_log_fingerprints",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults and sets the process-wide policy.
func (h *Handler) Provision(caddy.Context) error {
	if len(h.Headers) == 0 {
		h.Headers = DefaultHeaders
	}
	h.key = caddy.NewReplacer().ReplaceAll(h.Key, "")
	key := processKey
	if h.key != "" {
		if b, err := hex.DecodeString(h.key); err == nil {
			key = b
		} else {
			key = []byte(h.key)
		}
	}
	setConfig(key, h.Headers)
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	for i, name := range h.Headers {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("headers[%d]: %q is not a header name", i, name)
		}
	}
	if h.key != "" && len(h.key) < 16 {
		return fmt.Errorf("key: at least 16 bytes, got %d", len(h.key))
	}
	return nil
}

// ServeHTTP adds the fingerprints once the response is written.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	c := current.Load()
	req := fingerprints(c, r.Header, "")
	err := next.ServeHTTP(w, r)
	resp := fingerprints(c, w.Header(), "resp_")
	if len(req)+len(resp) == 0 {
		return err
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Set(zap.Object("credential_fingerprints", fpObject(append(req, resp...))))
	}
	return err
}

func fingerprints(c *config, hdr http.Header, prefix string) []string {
	var out []string
	for _, name := range c.names {
		vals := hdr[name]
		if len(vals) == 0 {
			continue
		}
		lower := strings.ToLower(name)
		red := make([]string, len(vals))
		for i, v := range vals {
			red[i] = c.redactValue(lower, v, map[string]string{})
		}
		out = append(out, prefix+lower, strings.Join(red, ", "))
	}
	return out
}

// fpObject is name, value pairs as a log object.
type fpObject []string

func (o fpObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for i := 0; i+1 < len(o); i += 2 {
		enc.AddString(o[i], o[i+1])
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
