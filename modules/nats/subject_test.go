package neonats

import (
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestValidToken(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"acme", true}, {"az-a", true}, {"a_b-9", true}, {"A", true},
		{"", false}, {"a.b", false}, {"*", false}, {">", false}, {"a*", false}, {"a>", false},
		{"a b", false}, {"a\tb", false}, {"a\nb", false}, {"a\x00", false}, {"a\x7f", false},
		{"é", false}, {"ａ", false}, {strings.Repeat("a", 128), true}, {strings.Repeat("a", 129), false},
	} {
		err := ValidToken(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ValidToken(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadToken) {
			t.Errorf("ValidToken(%q): error does not wrap ErrBadToken", c.in)
		}
	}
}

func TestSubjectTemplate(t *testing.T) {
	st, err := ParseSubjectTemplate(DefaultSubject)
	if err != nil || !st.HasZone() {
		t.Fatal(err)
	}
	repl := caddy.NewReplacer()
	repl.Set("neo.stage", "prod")
	repl.Set("neo.tenant", "acme")
	repl.Set("neo.app", "orders")
	exp, err := st.Expand(repl)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := exp.Subject("az-b"); err != nil || s != "neo.rt.prod.az-b.acme.orders" {
		t.Fatalf("%q %v", s, err)
	}
	if _, err := exp.Subject("az.b"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("zone with a dot: %v", err)
	}
	repl.Set("neo.app", "orders.>")
	if _, err := st.Expand(repl); !errors.Is(err, ErrBadToken) {
		t.Fatalf("app with a wildcard: %v", err)
	}
	for _, bad := range []string{"", "neo..x", "neo.*.x", "neo.>", "neo.{neo.zone}x", "neo.{neo.zone}.{neo.zone}", "neo.{a", "neo.a}", "né"} {
		if _, err := ParseSubjectTemplate(bad); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
}

// FuzzSubject checks that whatever a placeholder expands to, the subject has
// exactly the template's tokens, each valid, or the request is rejected.
func FuzzSubject(f *testing.F) {
	f.Add("acme", "orders", "az-a")
	f.Add("a.b", "*", ">")
	f.Add("é", "a b", "")
	f.Add("{neo.app}", "x}", "{")
	f.Fuzz(func(t *testing.T, tenant, app, zone string) {
		st, err := ParseSubjectTemplate(DefaultSubject)
		if err != nil {
			t.Fatal(err)
		}
		repl := caddy.NewReplacer()
		repl.Set("neo.stage", "prod")
		repl.Set("neo.tenant", tenant)
		repl.Set("neo.app", app)
		exp, err := st.Expand(repl)
		if err != nil {
			if ValidToken(tenant) == nil && ValidToken(app) == nil && !strings.ContainsAny(tenant+app, "{}") {
				t.Fatalf("valid tokens %q %q rejected: %v", tenant, app, err)
			}
			return
		}
		s, err := exp.Subject(zone)
		if err != nil {
			return
		}
		toks := strings.Split(s, ".")
		if len(toks) != 6 || toks[0] != "neo" || toks[1] != "rt" || toks[2] != "prod" || toks[3] != zone {
			t.Fatalf("subject %q escaped its template", s)
		}
		for _, tok := range toks {
			if ValidToken(tok) != nil {
				t.Fatalf("subject %q has a bad token %q", s, tok)
			}
		}
	})
}

// FuzzSplitSubject checks the gateway's allocation-free subject split
// against strings.Split.
func FuzzSplitSubject(f *testing.F) {
	for _, s := range []string{"neo.rt.prod.az-a.acme.orders", "a.b.c.d.e", "a.b.c.d.e.f.g", "", ".....", "neo.rt.prod.az-a.acme.", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var toks [6]string
		ok := splitSubject(s, toks[:])
		want := strings.Split(s, ".")
		if ok != (len(want) == 6) {
			t.Fatalf("%q: split %v, want %v", s, ok, len(want) == 6)
		}
		if ok && toks != [6]string(want) {
			t.Fatalf("%q: %q, want %q", s, toks, want)
		}
	})
}
