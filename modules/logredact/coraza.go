package logredact

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

// FormatName is the Coraza audit log format: SecAuditLogFormat neo_json.
const FormatName = "neo_json"

func init() {
	plugins.RegisterAuditLogFormatter(FormatName, jsonFormatter{})
}

// jsonFormatter is Coraza's JSON audit format with credentials redacted.
type jsonFormatter struct{}

func (jsonFormatter) MIME() string { return "application/json; charset=utf-8" }

// Format writes the audit line. Only audited (blocked) requests pay for the
// extra decoding and encoding.
func (jsonFormatter) Format(al plugintypes.AuditLog) ([]byte, error) {
	raw, err := json.Marshal(al)
	if err != nil {
		return nil, err
	}
	return Redact(raw, current.Load())
}

// Redact redacts one JSON audit line in Coraza's format.
func Redact(raw []byte, c *config) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	secrets := map[string]string{}
	tx, _ := doc["transaction"].(map[string]any)
	for _, part := range []string{"request", "response"} {
		p, _ := tx[part].(map[string]any)
		hdrs, _ := p["headers"].(map[string]any)
		for name, vals := range hdrs {
			if !c.headers[strings.ToLower(name)] {
				continue
			}
			list, _ := vals.([]any)
			for i, v := range list {
				if s, ok := v.(string); ok {
					list[i] = c.redactValue(strings.ToLower(name), s, secrets)
				}
			}
		}
	}
	if len(secrets) > 0 {
		// longest first, so that a whole value goes before its parts
		keys := make([]string, 0, len(secrets))
		for k := range secrets {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
		ordered := func(s string) string {
			for _, k := range keys {
				if strings.Contains(s, k) {
					s = strings.ReplaceAll(s, k, secrets[k])
				}
			}
			return s
		}
		// Everything but the redacted headers: messages, matched data, args, body.
		for k, v := range doc {
			if k != "transaction" {
				doc[k] = walk(v, ordered)
			}
		}
		for _, part := range []string{"request", "response"} {
			if p, ok := tx[part].(map[string]any); ok {
				for k, v := range p {
					if k != "headers" {
						p[k] = walk(v, ordered)
					}
				}
			}
		}
	}
	return marshalTransactionFirst(doc)
}

// marshalTransactionFirst writes the line with "transaction" first, as
// Coraza's own JSON format does (log shippers may look for the prefix).
func marshalTransactionFirst(doc map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		if k != "transaction" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if _, ok := doc["transaction"]; ok {
		keys = append([]string{"transaction"}, keys...)
	}
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(doc[k])
		if err != nil {
			return nil, err
		}
		out = append(append(append(out, kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// walk applies f to every string in a decoded JSON value.
func walk(v any, f func(string) string) any {
	switch t := v.(type) {
	case string:
		return f(t)
	case []any:
		for i := range t {
			t[i] = walk(t[i], f)
		}
	case map[string]any:
		for k := range t {
			t[k] = walk(t[k], f)
		}
	}
	return v
}
