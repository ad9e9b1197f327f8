package neo

import (
	"strings"
	"testing"
)

func TestWAFExclusionValidate(t *testing.T) {
	for _, c := range []struct {
		e    WAFExclusion
		want string // "" valid, else part of the error
	}{
		{WAFExclusion{Rules: []string{"942100", "941100-941199"}, Tags: []string{"attack-sqli"}, Path: "/a/*", Args: []string{"q", "json.notes.*", "REQUEST_HEADERS:X-Y"}}, ""},
		{WAFExclusion{Tags: []string{"paranoia-level/2"}}, ""},
		{WAFExclusion{Path: "/a"}, "needs at least one rule or tag"},
		{WAFExclusion{Rules: []string{"0"}}, "rules[0]"},
		{WAFExclusion{Rules: []string{"942100-942000"}}, "rules[0]"},
		{WAFExclusion{Rules: []string{"+942100"}}, "rules[0]"},
		{WAFExclusion{Rules: []string{"1"}, Tags: []string{"a b"}}, "tags[0]"},
		{WAFExclusion{Rules: []string{"1"}, Path: "a"}, "path"},
		{WAFExclusion{Rules: []string{"1"}, Path: "/a*b"}, "path"},
		{WAFExclusion{Rules: []string{"1"}, Args: []string{"*"}}, "args[0]"},
		{WAFExclusion{Rules: []string{"1"}, Args: []string{"REQUEST_COOKIES:"}}, "args[0]"},
		{WAFExclusion{Rules: []string{"1"}, Args: []string{"a*b"}}, "args[0]"},
	} {
		err := c.e.validate("waf.exclusions[0]")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.e, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "waf.exclusions[0]")):
			t.Errorf("%+v: error %v, want one naming the field and %q", c.e, err, c.want)
		}
	}
	many := make([]WAFExclusion, MaxWAFExclusions+1)
	for i := range many {
		many[i].Rules = []string{"1"}
	}
	if err := validateWAFExclusions("waf.exclusions", many); err == nil {
		t.Error("too many exclusions accepted")
	}
}

func TestWAFExclusionMatchPath(t *testing.T) {
	e := WAFExclusion{Path: "/orders/api/*"}
	for p, want := range map[string]bool{"/orders/api/": true, "/orders/api/v1/x": true, "/orders/ap": false, "/billing/orders/api/x": false} {
		if e.MatchPath(p) != want {
			t.Errorf("%s: %v", p, !want)
		}
	}
	e.Path = "/graphql"
	if !e.MatchPath("/graphql") || e.MatchPath("/graphql/x") {
		t.Error("exact path")
	}
	if !(&WAFExclusion{}).MatchPath("/anything") {
		t.Error("no path: every path")
	}
}
