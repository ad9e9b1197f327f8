// Package wafaccel makes the Coraza WAF (coraza-caddy, OWASP CRS) cheaper per
// request without changing any verdict. It uses only Coraza's public
// extension points: it registers an @rx operator (plugins.RegisterOperator)
// whose matching is Coraza's @rx semantics, preceded by a literal prefilter
// derived from each pattern's syntax tree; @pm, @pmFromFile and @pmf
// operators with Coraza's semantics that record their phrase lists; and two
// actions (neoSkip, neoRuleInfo) that remove from each transaction the rules
// no value can match (docs/wafaccel-skip.md). Compiled patterns and their
// prefilters are shared process-wide by every WAF (tenant) and survive config
// reloads.
//
// The acceleration is on by default in every binary that links this package
// (modules/all blank-imports it). It is turned off, live and without
// rebuilding any WAF, with the Caddy app neo_waf_accel:
//
//	{
//		neo_waf_accel off
//	}
//
// or in JSON: {"apps": {"neo_waf_accel": {"off": true}}}. With it off the @rx
// operator runs the regex engine on every evaluation, exactly like Coraza's.
package wafaccel

import (
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
)

// enabled is the process-wide switch consulted by every accelerated operator
// at evaluation time.
var enabled atomic.Bool

// live holds the started neo_waf_accel apps by start order. The switch follows
// the most recently started app that is still running, so that it is right
// whatever the order of starts and stops across config reloads (the new
// config's app starts before the old one stops; a config that fails to start
// stops its app while the old config keeps running).
var live struct {
	sync.Mutex
	next uint64
	apps map[uint64]bool // start order -> Off
}

func init() {
	enabled.Store(true)
	plugins.RegisterOperator("rx", newRxOperator)
	caddy.RegisterModule(App{})
}

// Enabled reports whether the acceleration is on.
func Enabled() bool { return enabled.Load() }

// SetEnabled turns the acceleration on or off for the whole process and
// returns the previous setting. It is meant for programs that embed Coraza
// without Caddy, and for tests; in Caddy use the neo_waf_accel app.
func SetEnabled(on bool) bool { return enabled.Swap(on) }

// App is the neo_waf_accel Caddy app: the documented switch for the WAF
// acceleration. Without this app in the config the acceleration is on.
type App struct {
	// Off turns the acceleration off: every @rx evaluation runs the regex
	// engine, as stock Coraza does. Default: false (acceleration on).
	Off bool `json:"off,omitempty"`

	gen uint64
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo_waf_accel",
		New: func() caddy.Module { return new(App) },
	}
}

// Start applies the setting.
func (a *App) Start() error {
	live.Lock()
	defer live.Unlock()
	if live.apps == nil {
		live.apps = map[uint64]bool{}
	}
	live.next++
	a.gen = live.next
	live.apps[a.gen] = a.Off
	enabled.Store(!a.Off)
	return nil
}

// Stop hands the switch to the most recently started app still running, or
// back to the default (on) when none is.
func (a *App) Stop() error {
	live.Lock()
	defer live.Unlock()
	delete(live.apps, a.gen)
	var latest uint64
	for g := range live.apps {
		latest = max(latest, g)
	}
	if latest == 0 {
		enabled.Store(true)
	} else {
		enabled.Store(!live.apps[latest])
	}
	return nil
}

// Interface guards
var (
	_ caddy.App    = (*App)(nil)
	_ caddy.Module = (*App)(nil)
)
