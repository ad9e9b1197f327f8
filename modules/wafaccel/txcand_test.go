package wafaccel

import (
	"strconv"
	"testing"

	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

func TestTxCandidate(t *testing.T) {
	for _, c := range []struct {
		raw string
		ok  bool
	}{
		{`SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 1" "id:911012,phase:2,pass,nolog"`, true},
		{`SecRule TX:BLOCKING_OUTBOUND_ANOMALY_SCORE "@ge %{tx.outbound_anomaly_score_threshold}" "id:959100,phase:4,deny"`, true},
		{`SecRule &TX:crs_setup_version "@eq 0" "id:1,phase:2,deny"`, true},
		{`SecRule TX:x "!@eq 1" "id:1,phase:2,pass,t:none"`, true},
		{`SecRule TX:x "@eq 1" "id:1,phase:2,pass,t:length"`, false},
		{`SecRule TX:x "@streq 1" "id:1,phase:2,pass"`, false},
		{`SecRule TX:x|TX:y "@eq 1" "id:1,phase:2,pass"`, false},
		{`SecRule TX:/x/ "@eq 1" "id:1,phase:2,pass"`, false},
		{`SecRule TX:1 "@eq 1" "id:1,phase:2,pass"`, false},
		{`SecRule TX:x "@eq %{REQUEST_HEADERS.y}" "id:1,phase:2,pass"`, false},
		{`SecRule TX:x "@eq 1x" "id:1,phase:2,pass"`, false},
		{`SecRule ARGS:x "@eq 1" "id:1,phase:2,pass"`, false},
	} {
		r, ok := parseRuleText(c.raw)
		if !ok {
			t.Fatalf("%s: not read", c.raw)
		}
		if _, got := r.txCandidate(); got != c.ok {
			t.Errorf("%s: candidate %v, want %v", c.raw, got, c.ok)
		}
	}
	e := flowEntry{phase: 2}
	readFlow(`SecRule ARGS "@rx a" "id:1,phase:2,pass,setvar:'tx.a=+1',setvar:!TX.B,setvar:'tx.header_name_%{tx.0}=1',setvar:ip.x=1,setvar:%{tx.c}.d=1"`, &e)
	w := (&flowSeq{entries: []flowEntry{e}}).phaseWrites(2)
	for name, want := range map[string]bool{"a": true, "b": true, "header_name_x": true, "c": true, "zz": true} {
		if w.writes(name) != want {
			t.Errorf("writes %s: %v", name, !want)
		}
	}
	if (&flowSeq{entries: []flowEntry{e}}).phaseWrites(3).writes("a") {
		t.Error("another phase's write counted")
	}
}

// FuzzTxCond checks the comparison against Coraza's own operators: for
// every operator, argument and TX value, the rule may match (mayMatch)
// whenever Coraza's operator matches.
func FuzzTxCond(f *testing.F) {
	for _, s := range []string{"1", "0", "-3", "x", "", "007", "2147483648", " 1"} {
		f.Add(s, "1", false)
		f.Add(s, "%{tx.thr}", true)
	}
	waf, err := coraza.NewWAF(coraza.NewWAFConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value, arg string, count bool) {
		if _, err := strconv.Atoi(arg); err != nil && arg != "%{tx.thr}" {
			return
		}
		tx := waf.NewTransaction()
		defer tx.Close()
		st := tx.(plugintypes.TransactionState)
		st.Variables().TX().Set("v", []string{value})
		st.Variables().TX().Set("thr", []string{value + "5"})
		for op := range txOps {
			name := "v"
			target := "TX:" + name
			if count {
				target = "&" + target
			}
			for _, neg := range []string{"", "!"} {
				r, ok := parseRuleText(`SecRule ` + target + ` "` + neg + `@` + op + ` ` + arg + `" "id:1,phase:2,pass"`)
				if !ok {
					t.Fatal("not read")
				}
				c, ok := r.txCandidate()
				if !ok {
					t.Fatalf("%s %s: not a candidate", op, arg)
				}
				coraza, err := corazaOperatorRegistry[op](plugintypes.OperatorOptions{Arguments: arg})
				if err != nil {
					t.Fatal(err)
				}
				in := value
				if count {
					in = "1"
				}
				want := coraza.Evaluate(st, in) != (neg == "!")
				if got := c.mayMatch(st); got != want {
					t.Fatalf("%s%s %s on %q (count %v): %v, Coraza %v", neg, op, arg, value, count, got, want)
				}
			}
		}
	})
}

// TestTxSlots: reading through shared slots gives mayMatch's answers.
func TestTxSlots(t *testing.T) {
	waf, err := coraza.NewWAF(coraza.NewWAFConfig())
	if err != nil {
		t.Fatal(err)
	}
	tx := waf.NewTransaction()
	defer tx.Close()
	st := tx.(plugintypes.TransactionState)
	st.Variables().TX().Set("a", []string{"2"})
	st.Variables().TX().Set("thr", []string{"3"})
	var slots txSlots
	var conds []*txCond
	for _, raw := range []string{`"@lt 1"`, `"@ge 2"`, `"!@eq 2"`, `"@lt %{tx.thr}"`, `"@gt %{tx.thr}"`, `"@eq %{tx.none}"`} {
		for _, target := range []string{"TX:a", "&TX:a", "TX:b", "&TX:b"} {
			r, ok := parseRuleText(`SecRule ` + target + ` ` + raw + ` "id:1,phase:2"`)
			if !ok {
				t.Fatal(raw)
			}
			c, ok := r.txCandidate()
			if !ok {
				t.Fatal(raw)
			}
			slots.assign(c)
			conds = append(conds, c)
		}
	}
	var v txValues
	if !slots.read(st, &v) {
		t.Fatal("no TX")
	}
	if len(slots.reads) != 6 {
		t.Errorf("%d reads, want 6 (a, &a, b, &b, two arguments)", len(slots.reads))
	}
	for i, c := range conds {
		if c.mayMatchWith(&v) != c.mayMatch(st) {
			t.Errorf("condition %d (%+v): slots %v, direct %v", i, c, c.mayMatchWith(&v), c.mayMatch(st))
		}
	}
}
