// Package logredact keeps credentials out of the edge's logs while keeping a
// short fingerprint of each for correlation.
//
// A fingerprint is "fp:" and the first 8 bytes, in hex, of the HMAC-SHA256 of
// the value under a key: the same credential gives the same fingerprint in
// the WAF's audit log and the access log of one edge (and of every edge
// configured with the same key), but a log reader cannot test guesses of a
// credential against it without the key. The key is random per process
// unless configured (neo_log_fingerprints's key; the last config loaded
// sets it).
//
// Redacted forms keep what is not secret: "Bearer fp:…" (the scheme),
// "session=fp:…; theme=fp:…" (cookie names), "id=fp:…; Path=/; HttpOnly"
// (a Set-Cookie's attributes).
//
// It provides:
//   - the Coraza audit log format neo_json (SecAuditLogFormat neo_json):
//     Coraza's JSON audit line with the credential headers' values, in the
//     request and response parts, replaced by their redacted forms, and the
//     credentials (whole values, tokens, cookie values) removed from the
//     matched rules' messages and data;
//   - the handler neo_log_fingerprints, which adds the fingerprints of a
//     request's (and its response's) credential headers to the access log
//     (whose header values Caddy already shows as REDACTED), and sets the
//     list of credential headers and the key for both.
package logredact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
)

// DefaultHeaders are the credential headers redacted by default.
var DefaultHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// config is the process-wide redaction policy.
type config struct {
	key     []byte
	headers map[string]bool // lowercase names
	names   []string        // canonical names, in order
}

var current atomic.Pointer[config]

// processKey is the random default key, shared by every config of the process.
var processKey = func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}()

func init() {
	setConfig(processKey, DefaultHeaders)
}

func setConfig(key []byte, headers []string) {
	c := &config{key: key, headers: map[string]bool{}}
	for _, h := range headers {
		c.headers[strings.ToLower(h)] = true
		c.names = append(c.names, http.CanonicalHeaderKey(h))
	}
	current.Store(c)
}

// Fingerprint returns the fingerprint of a value under the current key.
func Fingerprint(v string) string { return current.Load().fingerprint(v) }

func (c *config) fingerprint(v string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(v))
	var sum [sha256.Size]byte
	return "fp:" + hex.EncodeToString(m.Sum(sum[:0])[:8])
}

// minSecret is the shortest value scrubbed from free text (messages):
// shorter ones are no secret worth the damage of replacing every occurrence.
const minSecret = 6

// redactValue returns the redacted form of one value of header name
// (lowercase) and adds the secrets it holds to secrets.
func (c *config) redactValue(name, v string, secrets map[string]string) string {
	add := func(s string) string {
		fp := c.fingerprint(s)
		if len(s) >= minSecret {
			secrets[s] = fp
		}
		return fp
	}
	switch name {
	case "authorization", "proxy-authorization":
		if scheme, cred, ok := strings.Cut(v, " "); ok && scheme != "" && strings.TrimSpace(cred) != "" {
			add(v)
			return scheme + " " + add(strings.TrimSpace(cred))
		}
		return add(v)
	case "cookie":
		add(v)
		parts := strings.Split(v, ";")
		for i, p := range parts {
			p = strings.TrimSpace(p)
			if k, val, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + add(val)
			} else {
				parts[i] = add(p)
			}
		}
		return strings.Join(parts, "; ")
	case "set-cookie":
		add(v)
		first, attrs, _ := strings.Cut(v, ";")
		if k, val, ok := strings.Cut(first, "="); ok {
			first = strings.TrimSpace(k) + "=" + add(val)
		} else {
			first = add(first)
		}
		if attrs != "" {
			return first + ";" + attrs
		}
		return first
	}
	return add(v)
}
