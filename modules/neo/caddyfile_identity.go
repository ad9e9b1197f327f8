package neo

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

// parseIdentityBlock parses a tenant's identity block (inside `tenant <t>`,
// or as `identity <t>` in the neo block for a tenant defined before it):
//
//	identity {
//	    platform {                       # the organization's members
//	        <realm>
//	    }
//	    stage <stage> {                  # the stage's end users
//	        <realm>
//	    }
//	}
//
// where <realm> is any number of:
//
//	user <name> {
//	    name          <display name>
//	    email         <address>
//	    password_hash <bcrypt or argon2id hash>
//	    password      <plain text>     # Caddy config only (local topology)
//	    roles         <role>...
//	    disabled
//	}
//	oidc <name> {
//	    issuer        <url>
//	    client_id     <id>
//	    client_secret env:NEO_OIDC_<NAME>
//	    scopes        <scope>...       # default openid email profile
//	    role_claim    <claim>          # default groups
//	    role          <claim value> <role>...   # repeatable
//	    require_role
//	    label         <button text>
//	}
func parseIdentityBlock(d *caddyfile.Dispenser, tn string) (*IdentityConfig, error) {
	ic := &IdentityConfig{}
	dir := "neo: tenant " + tn + " identity"
	err := cfblock.Walk(d, dir, func(name string) error {
		switch name {
		case "platform":
			if err := cfblock.Flag(d); err != nil {
				return err
			}
			rc, err := parseRealmBlock(d, dir+" platform")
			ic.Platform = rc
			return err
		case "stage":
			s, err := cfblock.One(d)
			if err != nil {
				return err
			}
			if _, dup := ic.Stages[s]; dup {
				return d.Errf("%s: stage %q given twice", dir, s)
			}
			rc, err := parseRealmBlock(d, dir+" stage "+s)
			if ic.Stages == nil {
				ic.Stages = map[string]*RealmConfig{}
			}
			ic.Stages[s] = rc
			return err
		}
		return cfblock.Unknown(d, dir, name)
	}, "stage")
	return ic, err
}

func parseRealmBlock(d *caddyfile.Dispenser, dir string) (*RealmConfig, error) {
	rc := &RealmConfig{}
	err := cfblock.Walk(d, dir, func(name string) error {
		switch name {
		case "user":
			un, err := cfblock.One(d)
			if err != nil {
				return err
			}
			if _, dup := rc.Users[un]; dup {
				return d.Errf("%s: user %q given twice", dir, un)
			}
			u := &UserConfig{}
			udir := dir + " user " + un
			err = cfblock.Walk(d, udir, func(name string) error {
				var err error
				switch name {
				case "name":
					u.Name, err = cfblock.One(d)
				case "email":
					u.Email, err = cfblock.One(d)
				case "password_hash":
					u.PasswordHash, err = cfblock.One(d)
				case "password":
					u.Password, err = cfblock.One(d)
				case "roles":
					u.Roles, err = cfblock.Args(d, 1, -1)
				case "disabled":
					u.Disabled = true
					err = cfblock.Flag(d)
				default:
					return cfblock.Unknown(d, udir, name)
				}
				return err
			})
			if rc.Users == nil {
				rc.Users = map[string]*UserConfig{}
			}
			rc.Users[un] = u
			return err
		case "oidc":
			pn, err := cfblock.One(d)
			if err != nil {
				return err
			}
			if _, dup := rc.Providers[pn]; dup {
				return d.Errf("%s: oidc provider %q given twice", dir, pn)
			}
			p := &ProviderConfig{}
			pdir := dir + " oidc " + pn
			err = cfblock.Walk(d, pdir, func(name string) error {
				var err error
				switch name {
				case "issuer":
					p.Issuer, err = cfblock.One(d)
				case "client_id":
					p.ClientID, err = cfblock.One(d)
				case "client_secret":
					p.ClientSecret, err = cfblock.One(d)
				case "scopes":
					p.Scopes, err = cfblock.Args(d, 1, -1)
				case "role_claim":
					p.RoleClaim, err = cfblock.One(d)
				case "label":
					p.Label, err = cfblock.One(d)
				case "require_role":
					p.RequireRole = true
					err = cfblock.Flag(d)
				case "role":
					var args []string
					if args, err = cfblock.Args(d, 2, -1); err != nil {
						return err
					}
					if p.RoleMap == nil {
						p.RoleMap = map[string][]string{}
					}
					if _, dup := p.RoleMap[args[0]]; dup {
						return d.Errf("%s: role %q given twice", pdir, args[0])
					}
					p.RoleMap[args[0]] = args[1:]
				default:
					return cfblock.Unknown(d, pdir, name)
				}
				return err
			}, "role")
			if rc.Providers == nil {
				rc.Providers = map[string]*ProviderConfig{}
			}
			rc.Providers[pn] = p
			return err
		}
		return cfblock.Unknown(d, dir, name)
	}, "user", "oidc")
	return rc, err
}
