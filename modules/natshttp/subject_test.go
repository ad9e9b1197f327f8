package natshttp

import (
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

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
	if _, err := exp.Subject("az.b"); !errors.Is(err, natsconn.ErrBadToken) {
		t.Fatalf("zone with a dot: %v", err)
	}
	repl.Set("neo.app", "orders.>")
	if _, err := st.Expand(repl); !errors.Is(err, natsconn.ErrBadToken) {
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
			if natsconn.ValidToken(tenant) == nil && natsconn.ValidToken(app) == nil && !strings.ContainsAny(tenant+app, "{}") {
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
			if natsconn.ValidToken(tok) != nil {
				t.Fatalf("subject %q has a bad token %q", s, tok)
			}
		}
	})
}
