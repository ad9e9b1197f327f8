// Package renamed refuses the module IDs and Caddyfile global options
// caddy-neo registered before every name it owns was namespaced (`neo_…`),
// with an error naming the new one.
//
// The old names (`nats`, `nats_gateway`, `waf_accel`,
// `http.reverse_proxy.transport.nats`, `caddy.storage.nats`) are also
// registered by published plugins (caddy-nats-bridge, certmagic-nats, ...),
// and Caddy panics on a duplicate registration. So Register must run after
// every plugin's init (from main, before caddycmd.Main), and it takes an old
// name only while no plugin has it: a build that adds such a plugin gets the
// plugin, never a collision. Nothing in caddy-neo's modules imports this
// package.
package renamed

import (
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/certmagic"
)

// Names maps each old module ID to its new one.
var Names = map[string]string{
	"nats":                              "neo_nats",
	"nats_gateway":                      "neo_nats_gateway",
	"waf_accel":                         "neo_waf_accel",
	"http.reverse_proxy.transport.nats": "http.reverse_proxy.transport.neo_nats",
	"caddy.storage.nats":                "caddy.storage.neo_nats",
}

// GlobalOptions maps each old Caddyfile global option to its new name.
var GlobalOptions = map[string]string{
	"nats":         "neo_nats",
	"nats_gateway": "neo_nats_gateway",
	"waf_accel":    "neo_waf_accel",
}

// Register registers every old name no other plugin has registered. Call it
// from main, after all package inits. It returns the names it took.
func Register() []string {
	var took []string
	for old, now := range Names {
		if _, err := caddy.GetModule(old); err == nil {
			continue // a plugin owns the name
		}
		caddy.RegisterModule(tombstone{id: old, now: now})
		took = append(took, old)
	}
	for old, now := range GlobalOptions {
		if registerOption(old, now) {
			took = append(took, "global option "+old)
		}
	}
	return took
}

// registerOption registers a global option that fails naming the new one,
// unless a plugin has the name (RegisterGlobalOption panics then, and
// httpcaddyfile offers no lookup).
func registerOption(old, now string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	httpcaddyfile.RegisterGlobalOption(old, func(d *caddyfile.Dispenser, _ any) (any, error) {
		d.Next()
		return nil, d.Errf("global option %q was renamed %q: rename it in your Caddyfile", old, now)
	})
	return true
}

// tombstone stands for an old module ID: it accepts any JSON and any
// Caddyfile tokens only to fail with the new name.
type tombstone struct{ id, now string }

func (t tombstone) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  caddy.ModuleID(t.id),
		New: func() caddy.Module { return &tombstone{id: t.id, now: t.now} },
	}
}

func (t *tombstone) err() error {
	return fmt.Errorf("module %q was renamed %q: rename it in your config", t.id, t.now)
}

// UnmarshalJSON accepts any value, so that the error is the rename, not an
// unknown field.
func (t *tombstone) UnmarshalJSON([]byte) error { return nil }

// Provision fails naming the new module.
func (t *tombstone) Provision(caddy.Context) error { return t.err() }

// UnmarshalCaddyfile fails naming the new module (`transport nats`,
// `storage nats`).
func (t *tombstone) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return d.Errf("%v", t.err())
}

// CertMagicStorage never runs (Provision fails first); Caddy asserts the
// interface on storage modules.
func (t *tombstone) CertMagicStorage() (certmagic.Storage, error) { return nil, t.err() }

// Start and Stop make it an app; Provision fails first.
func (t *tombstone) Start() error { return t.err() }
func (t *tombstone) Stop() error  { return nil }

// Interface guards
var (
	_ caddy.Provisioner      = (*tombstone)(nil)
	_ caddy.App              = (*tombstone)(nil)
	_ caddy.StorageConverter = (*tombstone)(nil)
	_ caddyfile.Unmarshaler  = (*tombstone)(nil)
	_ json.Unmarshaler       = (*tombstone)(nil)
)
