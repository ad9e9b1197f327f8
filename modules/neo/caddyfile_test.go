package neo

import (
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/projectneo/caddy-neo/internal/adapttest"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"unknown option":      {"{\n neo {\n  colour blue\n }\n}\n:80", `unknown subdirective "colour"`},
		"zone twice":          {"{\n neo {\n  zone a\n }\n neo {\n  zone b\n }\n}\n:80", "zone given twice"},
		"tenant twice":        {"{\n neo {\n  tenant acme\n }\n neo {\n  tenant acme\n }\n}\n:80", `tenant "acme" defined twice`},
		"app twice":           {"{\n neo {\n  tenant acme {\n   app a\n   app a\n  }\n }\n}\n:80", `app "a" defined twice`},
		"bad store":           {"{\n neo {\n  store redis\n }\n}\n:80", `unknown store "redis"`},
		"replica args":        {"{\n neo {\n  service b /b/ {\n   replica\n  }\n }\n}\n:80", "wrong argument count"},
		"domain args":         {"{\n neo {\n  tenant acme {\n   domain x.com\n  }\n }\n}\n:80", "wrong argument count"},
		"domain sub":          {"{\n neo {\n  tenant acme {\n   domain x.com prod {\n    colour\n   }\n  }\n }\n}\n:80", `unknown subdirective "colour"`},
		"route arg":           {":80 {\n neo_route x\n}", "wrong argument count"},
		"stage host args":     {":80 {\n neo_stage_host prod\n}", "neo_stage_host: want <stage> <tenant>"},
		"stage host extra":    {":80 {\n neo_stage_host prod acme x\n}", `got an extra argument "x"`},
		"access arg":          {":80 {\n neo_access x\n}", "wrong argument count"},
		"access sub":          {":80 {\n neo_access {\n  colour\n }\n}", `unknown subdirective "colour"`},
		"welcome args":        {"{\n neo {\n  welcome a b\n }\n}\n:80", "wrong argument count"},
		"route sub":           {":80 {\n neo_route {\n  colour\n }\n}", `unknown subdirective "colour"`},
		"dynamic arg":         {":80 {\n reverse_proxy {\n  dynamic neo x\n }\n}", "wrong argument count"},
		"permission arg":      {"{\n on_demand_tls {\n  permission neo x\n }\n}\n:80", "wrong argument count"},
		"stages without args": {"{\n neo {\n  stages\n }\n}\n:80", "wrong argument count"},
		"waf sub":             {"{\n neo {\n  tenant acme {\n   waf {\n    colour\n   }\n  }\n }\n}\n:80", `waf: unknown subdirective "colour"`},
		"tier args":           {"{\n neo {\n  tenant acme {\n   rate_limit_tier\n  }\n }\n}\n:80", "wrong argument count"},
		"tier matcher args":   {":80 {\n @t neo_rate_tier\n respond @t 1\n}", "wrong argument count"},
		"waf twice":           {"{\n neo {\n  tenant acme {\n   waf\n   waf\n  }\n }\n}\n:80", "waf defined twice"},
		"route twice":         {":80 {\n neo_route {\n  trust_forwarded_host\n  trust_forwarded_host\n }\n}", `neo_route: duplicate subdirective "trust_forwarded_host"`},
		"route flag arg":      {":80 {\n neo_route {\n  trust_forwarded_host yes\n }\n}", "trust_forwarded_host: wrong argument count"},
		"zone policy twice":   {":80 {\n reverse_proxy a:1 {\n  lb_policy neo_zone {\n   zone a\n   zone b\n  }\n }\n}", `neo_zone: duplicate subdirective "zone"`},
		"zone policy sub":     {":80 {\n reverse_proxy a:1 {\n  lb_policy neo_zone {\n   colour blue\n  }\n }\n}", `neo_zone: unknown subdirective "colour"`},
		"zone policy value":   {":80 {\n reverse_proxy a:1 {\n  lb_policy neo_zone {\n   health_path\n  }\n }\n}", "health_path: wrong argument count"},
		"zone header arg":     {":80 {\n reverse_proxy a:1 {\n  lb_policy neo_zone {\n   zone_header yes\n  }\n }\n}", "zone_header: wrong argument count"},
		"zone policy number":  {":80 {\n reverse_proxy a:1 {\n  lb_policy neo_zone {\n   health_fails many\n  }\n }\n}", "neo_zone: health_fails: want a number"},
		"exclude nothing":     {"{\n neo {\n  tenant acme {\n   waf {\n    exclude {\n     path /x\n    }\n   }\n  }\n }\n}\n:80", "needs at least one rule or tag"},
		"exclude bad id":      {"{\n neo {\n  tenant acme {\n   waf {\n    exclude 94x100\n   }\n  }\n }\n}\n:80", `rules[0]: "94x100" is not a rule id`},
		"exclude bad path":    {"{\n neo {\n  tenant acme {\n   waf {\n    exclude 1 {\n     path x*y\n    }\n   }\n  }\n }\n}\n:80", `path: "x*y" must start with /`},
		"exclude sub":         {"{\n neo {\n  tenant acme {\n   waf {\n    exclude 1 {\n     colour\n    }\n   }\n  }\n }\n}\n:80", `exclude: unknown subdirective "colour"`},
		"app protocol typo":   {"{\n neo {\n  tenant acme {\n   app a {\n    protocol h2\n   }\n  }\n }\n}\n:80", `app a: protocol must be h1 or h2c, got "h2"`},
		"app protocol twice":  {"{\n neo {\n  tenant acme {\n   app a {\n    protocol h2c\n    protocol h1\n   }\n  }\n }\n}\n:80", "protocol given twice"},
		"app protocol args":   {"{\n neo {\n  tenant acme {\n   app a {\n    protocol\n   }\n  }\n }\n}\n:80", "wrong argument count"},
		"waf paranoia":        {"{\n neo {\n  tenant acme {\n   waf {\n    paranoia high\n   }\n  }\n }\n}\n:80", `paranoia: "high" is not a number`},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}
