// Package secrets provides the `neo_secrets` app: the secrets a config depends
// on, checked whenever the config loads, so that a production role fails
// closed. A config whose secret is missing, or equals a value published with
// caddy-neo (the local topology's signing key, the demo passwords) or a
// placeholder word, is refused with an error naming the secret's variable:
// at start (`caddy run` exits) and on a reload (the running config stays).
//
// A Caddyfile's `{$VAR}` is substituted where the Caddyfile is adapted: in the
// shell that runs `caddy run`, `caddy adapt` or `caddy reload`. A reload from
// a shell without the variable therefore sends a config without the secret
// (or with a snippet's local default): that config is what this app checks,
// on the server, so the reload is refused instead of replacing a real key by
// a default. Values read by the server at run time (`{env.VAR}`) are checked
// in the server's own environment.
//
// Modules that hold secrets (the neo_nats connections) load this app first,
// so a missing secret is reported as such rather than as, say, an
// authorization failure.
package secrets

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `neo_secrets` app (Caddyfile global option `neo_secrets`).
type App struct {
	// Required lists the secrets the config needs. Default: none.
	Required []Secret `json:"required,omitempty"`
}

// Secret is one required secret. Its value is not in the config: only its
// fingerprint, or the name of the environment variable the server reads it from.
type Secret struct {
	// Name is the secret's name in errors: the environment variable that
	// holds it, for example NEO_NATS_EDGE_PASSWORD. Required.
	Name string `json:"name"`
	// SHA256 is the hex SHA-256 of the value where the config was adapted.
	// Default: empty, meaning the value was empty or unset (refused).
	SHA256 string `json:"sha256,omitempty"`
	// Env names an environment variable of the server process that holds
	// the value, for secrets the config reads at run time (`{env.VAR}`);
	// SHA256 is then ignored. Default: none.
	Env string `json:"env,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo_secrets",
		New: func() caddy.Module { return new(App) },
	}
}

var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Provision checks every secret: the config is refused when one is missing
// or a known default, naming all of them.
func (a *App) Provision(ctx caddy.Context) error {
	if err := a.Validate(); err != nil {
		return err
	}
	var bad []string
	for _, s := range a.Required {
		if msg := s.check(); msg != "" {
			bad = append(bad, s.Name+": "+msg)
		}
	}
	if len(bad) > 0 {
		err := errors.New("neo_secrets: " + strings.Join(bad, "; "))
		ctx.Logger().Error("config refused: a secret is missing or a known default", zap.Strings("secrets", bad))
		return err
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	seen := map[string]bool{}
	for i, s := range a.Required {
		if !validName.MatchString(s.Name) {
			return fmt.Errorf("required[%d].name: %q is not a variable name", i, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("required[%d].name: %s is listed twice", i, s.Name)
		}
		seen[s.Name] = true
		if s.Env != "" && !validName.MatchString(s.Env) {
			return fmt.Errorf("required[%d].env: %q is not a variable name", i, s.Env)
		}
		if s.SHA256 != "" {
			if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size {
				return fmt.Errorf("required[%d].sha256: want 64 hex digits", i)
			}
		}
	}
	return nil
}

// Start does nothing: the check is made when the config loads.
func (*App) Start() error { return nil }

// Stop does nothing.
func (*App) Stop() error { return nil }

// check returns why the secret is refused, or "".
func (s Secret) check() string {
	sum := s.SHA256
	if s.Env != "" {
		v := os.Getenv(s.Env)
		if v == "" {
			return fmt.Sprintf("not set: the server reads it from its environment variable %s at run time; set it where caddy runs", s.Env)
		}
		sum = Fingerprint(v)
	}
	if sum == "" {
		return "not set: set it in the environment where the config is adapted (the shell or service that runs `caddy run` or `caddy reload`)"
	}
	if knownDefault(sum) {
		return "is a publicly known default (shipped with caddy-neo, or a placeholder word): set a secret of your own"
	}
	return ""
}

// Fingerprint is the hex SHA-256 of a secret's value, as the config holds it.
func Fingerprint(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// KnownDefaults are values that must never protect a production role: the
// defaults and demo secrets published in caddy-neo's own files, and
// placeholder words. TestKnownDefaultsCoverShippedFiles checks that every
// default a shipped Caddyfile gives a required secret is listed.
var KnownDefaults = []string{
	"local-topology-only-signing-key-change-me",
	"neo-demo-password",
	"acme-orders-demo-secret",
	"acme-ledger-demo-secret",
	"globex-billing-demo-secret",
	"change-me", "changeme", "change_me", "secret", "password", "default", "example", "test", "xxx", "todo", "...", "…",
}

var knownSums = func() [][]byte {
	out := make([][]byte, len(KnownDefaults))
	for i, v := range KnownDefaults {
		h := sha256.Sum256([]byte(v))
		out[i] = h[:]
	}
	return out
}()

// IsKnownDefault reports whether v is one of KnownDefaults.
func IsKnownDefault(v string) bool { return knownDefault(Fingerprint(v)) }

func knownDefault(sum string) bool {
	b, err := hex.DecodeString(sum)
	if err != nil {
		return false
	}
	for _, k := range knownSums {
		if subtle.ConstantTimeCompare(b, k) == 1 {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)

// CheckFirst loads the config's neo_secrets app, if it has one, so that a
// module holding a secret reports a missing or default secret naming its
// variable before it uses the value (and fails on it in its own words).
func CheckFirst(ctx caddy.Context) error {
	if _, err := ctx.AppIfConfigured("neo_secrets"); err != nil && !errors.Is(err, caddy.ErrNotConfigured) {
		return err
	}
	return nil
}
