package wafaccel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(b), "----------")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			if !caddytest.CompareAdapt(t, f, strings.TrimSpace(in), "caddyfile", strings.TrimSpace(want)) {
				t.Fail()
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, in := range []string{
		"neo_waf_accel maybe",
		"neo_waf_accel on off",
		"neo_waf_accel {\n on\n off\n}",
		"neo_waf_accel off {\n on\n}",
		"neo_waf_accel {\n fast\n}",
		"neo_waf_accel {\n off now\n}",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// TestAppSwitch checks the switch across a config reload: the new config's
// app starts before the old one stops, and only the latest app decides.
func TestAppSwitch(t *testing.T) {
	defer SetEnabled(true)
	old := &App{}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	if !Enabled() {
		t.Fatal("default must be on")
	}
	next := &App{Off: true}
	_ = next.Start()
	_ = old.Stop() // reload: old app stops after the new one started
	if Enabled() {
		t.Fatal("reload to off: still on")
	}
	_ = next.Stop() // config without neo_waf_accel: back to the default
	if !Enabled() {
		t.Fatal("after the app stopped: still off")
	}

	// A reload that fails: the new config's app starts, then stops, while
	// the old config (off) keeps running.
	running := &App{Off: true}
	_ = running.Start()
	failed := &App{}
	_ = failed.Start()
	if !Enabled() {
		t.Fatal("new config (on) started: still off")
	}
	_ = failed.Stop()
	if Enabled() {
		t.Fatal("failed reload: the running config says off, switch is on")
	}
	_ = running.Stop()
	if !Enabled() {
		t.Fatal("no app left: not back to the default")
	}
}

// TestSwitchBypassesPrefilter checks that with the switch off every
// evaluation runs the regex engine.
func TestSwitchBypassesPrefilter(t *testing.T) {
	defer SetEnabled(true)
	countStats = true
	defer func() { countStats = false }()
	op, err := newRxOperator(plugintypes.OperatorOptions{Arguments: `(?i)union\s+select`})
	if err != nil {
		t.Fatal(err)
	}
	tx := &fakeTx{}
	before := rxSkipped.Load()
	SetEnabled(false)
	if op.Evaluate(tx, "hello") || rxSkipped.Load() != before {
		t.Fatal("switched off, yet the prefilter decided")
	}
	SetEnabled(true)
	if op.Evaluate(tx, "hello") || rxSkipped.Load() != before+1 {
		t.Fatal("switched on, yet the prefilter did not decide")
	}
	if !op.Evaluate(tx, "1 UNION  SELECT 2") {
		t.Fatal("no match")
	}
}
