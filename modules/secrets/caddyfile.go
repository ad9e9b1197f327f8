package secrets

import (
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("neo_secrets", parseGlobalOption)
}

// parseGlobalOption parses the `neo_secrets` global option; several blocks
// (one per imported snippet) merge.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	a := new(App)
	if existing != nil {
		if err := json.Unmarshal(existing.(httpcaddyfile.App).Value, a); err != nil {
			return nil, err
		}
	}
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "neo_secrets", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalCaddyfile sets up the app:
//
//	neo_secrets {
//	    require <NAME> ["{$NAME}"]
//	    require <NAME> {env.NAME}
//	}
//
// The value is normally `"{$NAME}"`, substituted where the Caddyfile is
// adapted; quote it, so that an unset variable leaves an empty value instead
// of no argument. The config keeps only its SHA-256. A value written
// `{env.VAR}` is read by the server at load instead, from its own
// environment. No value at all means the secret is missing.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "require" {
			return d.Errf("neo_secrets: unknown subdirective %q", d.Val())
		}
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.ArgErr()
		}
		s := Secret{Name: args[0]}
		if !validName.MatchString(s.Name) {
			return d.Errf("neo_secrets: %q is not a variable name", s.Name)
		}
		for _, o := range a.Required {
			if o.Name == s.Name {
				return d.Errf("neo_secrets: %s is required twice", s.Name)
			}
		}
		if len(args) == 2 && args[1] != "" {
			v := args[1]
			if env, ok := strings.CutPrefix(v, "{env."); ok && strings.HasSuffix(env, "}") && !strings.ContainsAny(env[:len(env)-1], "{}") {
				s.Env = env[:len(env)-1]
			} else {
				s.SHA256 = Fingerprint(v)
			}
		}
		a.Required = append(a.Required, s)
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*App)(nil)
