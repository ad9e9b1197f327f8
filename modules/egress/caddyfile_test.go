package egress

import (
	"strings"
	"testing"

	"github.com/projectneo/caddy-neo/internal/adapttest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestCaddyfileAdapt(t *testing.T) {
	adapttest.RunDir(t, "testdata/caddyfile_adapt")
}

func TestCaddyfileErrors(t *testing.T) {
	wrap := func(body string) string { return ":3128 {\n neo_egress {\n" + body + "\n }\n}" }
	for name, tc := range map[string]struct{ in, want string }{
		"unknown subdirective":   {wrap("color blue"), `unknown subdirective "color"`},
		"duplicate zone":         {wrap("zone a\nzone b"), `duplicate subdirective "zone"`},
		"zone without value":     {wrap("zone"), "wrong argument count"},
		"inline args":            {":3128 {\n neo_egress foo\n}", "wrong argument count"},
		"caller too short":       {wrap("caller 10.0.0.1"), "wrong argument count"},
		"caller too long":        {wrap("caller 10.0.0.1 a b c d"), "wrong argument count"},
		"credential too short":   {wrap("credential u sha256:00"), "wrong argument count"},
		"tenant twice":           {wrap("tenant a\ntenant a"), `tenant "a" listed twice`},
		"tenant unknown":         {wrap("tenant a {\nfoo\n}"), `unknown subdirective "foo"`},
		"app unknown":            {wrap("tenant a {\napp x {\nmax_conns 1\n}\n}"), `neo_egress: tenant "a" app "x": unknown subdirective "max_conns"`},
		"app twice":              {wrap("tenant a {\napp x\napp x\n}"), `app "x" listed twice`},
		"tenant sub twice":       {wrap("tenant a {\nmax_conns 1\nmax_conns 2\n}"), `neo_egress: tenant "a": duplicate subdirective "max_conns"`},
		"tenant without name":    {wrap("tenant {\nallow *\n}"), "tenant: wrong argument count"},
		"duplicate timeout":      {wrap("idle_timeout 1s\nidle_timeout 2s"), `neo_egress: duplicate subdirective "idle_timeout"`},
		"allow empty":            {wrap("tenant a {\nallow\n}"), "wrong argument count"},
		"bad max_conns":          {wrap("max_conns_per_tenant -1"), "max_conns_per_tenant"},
		"bad size":               {wrap("bytes_per_second_per_tenant lots"), "bytes_per_second_per_tenant"},
		"bad duration":           {wrap("idle_timeout soon"), "idle_timeout"},
		"zero duration":          {wrap("connect_timeout 0s"), "connect_timeout"},
		"static host twice":      {wrap("static_host a 1.2.3.4\nstatic_host a 1.2.3.5"), "listed twice"},
		"static host no address": {wrap("static_host a"), "wrong argument count"},
		"ranges empty":           {wrap("internal_ranges"), "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) { adapttest.ExpectError(t, tc.in, tc.want) })
	}
}

// TestValidateNamesField: bad configuration is rejected at load with an
// error naming the field.
func TestValidateNamesField(t *testing.T) {
	for name, tc := range map[string]struct {
		g    Gateway
		want string
	}{
		"no zone":          {Gateway{}, "zone"},
		"bad source":       {Gateway{Zone: "a", SourceAddress: "nope"}, "source_address"},
		"bad caller":       {Gateway{Zone: "a", Callers: []CallerAddress{{Address: "10.0.0.0/33", Tenant: "x"}}}, "callers[0].address"},
		"bad internal":     {Gateway{Zone: "a", InternalRanges: []string{"x"}}, "internal_ranges[0]"},
		"bad external":     {Gateway{Zone: "a", TreatAsExternal: []string{"1.2.3.4/40"}}, "treat_as_external[0]"},
		"bad static name":  {Gateway{Zone: "a", StaticHosts: map[string][]string{"1.2.3.4": {"1.2.3.4"}}}, "static_hosts"},
		"bad static addr":  {Gateway{Zone: "a", StaticHosts: map[string][]string{"a.test": {"x"}}}, `static_hosts["a.test"]`},
		"policy no tenant": {Gateway{Zone: "a", Policies: []Policy{{Allow: []string{"*"}}}}, "policies[0].tenant"},
		"policy dup":       {Gateway{Zone: "a", Policies: []Policy{{Tenant: "t"}, {Tenant: "t"}}}, "policies[1]"},
		"bad allow":        {Gateway{Zone: "a", Policies: []Policy{{Tenant: "t", Allow: []string{"ok.test", "bad:port"}}}}, "policies[0].allow[1]"},
		"app limits":       {Gateway{Zone: "a", Policies: []Policy{{Tenant: "t", App: "x", MaxConns: 3}}}, "per tenant"},
		"negative conns":   {Gateway{Zone: "a", MaxConnsPerTenant: -1}, "max_conns_per_tenant"},
		"negative bps":     {Gateway{Zone: "a", BytesPerSecondPerTenant: -1}, "bytes_per_second_per_tenant"},
		"negative policy":  {Gateway{Zone: "a", Policies: []Policy{{Tenant: "t", MaxConns: -2}}}, "policies[0].max_conns"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.g.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}
