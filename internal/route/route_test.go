package route

import (
	"context"
	"strings"
	"testing"
)

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

// FuzzParseSubject checks that ParseSubject and Build are inverse on the
// scheme's subjects, and that ParseSubject accepts nothing else.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"neo.rt.prod.az-a.acme.orders", "neo.rt.prod.az-a.acme", "neo.rt.prod.az-a.acme.orders.x", "neo.xx.prod.az-a.acme.orders", "", "neo.rt....."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sr, ok := ParseSubject(s)
		toks := strings.Split(s, ".")
		want := len(toks) == 6 && toks[0] == "neo" && toks[1] == "rt"
		if ok != want {
			t.Fatalf("%q: parsed %v, want %v", s, ok, want)
		}
		if !ok {
			if sr != (Subject{}) {
				t.Fatalf("%q: not a runtime subject, but parsed to %+v", s, sr)
			}
			return
		}
		if sr != (Subject{Stage: toks[2], Zone: toks[3], Tenant: toks[4], App: toks[5]}) {
			t.Fatalf("%q: parsed to %+v", s, sr)
		}
		if b := sr.Build(); b != s {
			t.Fatalf("%q: built back as %q", s, b)
		}
	})
}

func TestSubject(t *testing.T) {
	sr := Subject{Stage: "prod", Zone: "az-a", Tenant: "acme", App: "orders"}
	if s := sr.Build(); s != "neo.rt.prod.az-a.acme.orders" {
		t.Fatalf("Build: %q", s)
	}
	for _, c := range []struct{ stage, zone, tenant, want string }{
		{"prod", "az-a", "", "neo.rt.prod.az-a.>"},
		{"prod", "az-a", "acme", "neo.rt.prod.az-a.acme.>"},
		{"prod", "*", "acme", "neo.rt.prod.*.acme.>"},
	} {
		if p := Pattern(c.stage, c.zone, c.tenant); p != c.want {
			t.Errorf("Pattern(%q, %q, %q) = %q, want %q", c.stage, c.zone, c.tenant, p, c.want)
		}
	}
	if All != "neo.rt.>" {
		t.Errorf("All = %q", All)
	}
	ctx := WithSubject(context.Background(), sr)
	if got, ok := SubjectFrom(ctx); !ok || got != sr {
		t.Fatalf("SubjectFrom: %+v %v", got, ok)
	}
	if _, ok := SubjectFrom(context.Background()); ok {
		t.Fatal("SubjectFrom of a context without a route")
	}
}

func BenchmarkParseSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseSubject("neo.rt.prod.az-a.acme.orders"); !ok {
			b.Fatal("not parsed")
		}
	}
}
