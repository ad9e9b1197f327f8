package main

import (
	"context"
	"fmt"
	"net/http"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/internal/wafbench"
	"github.com/projectneo/caddy-neo/modules/wafaccel"
)

// The wafaccel-* comparisons measure the WAF (coraza_waf with load_owasp_crs,
// paranoia level 1, blocking) with the wafaccel speed-ups switched off
// (baseline) and on, in two caddy-neo processes with identical configs but
// for the neo_waf_accel option, each proxying to its own neo_echo replica. The
// comparison with nginx + ModSecurity is the separate command
// ./integration/bench/waf.
func init() {
	mp, mpType := wafbench.Multipart1MiB()
	ua := http.Header{"User-Agent": {wafbench.UserAgent}}
	withType := func(ct string) http.Header {
		h := ua.Clone()
		h.Set("Content-Type", ct)
		return h
	}
	attacks := func(base string) []vegeta.Target {
		var ts []vegeta.Target
		for _, p := range wafbench.AttackPaths() {
			ts = append(ts, vegeta.Target{Method: "GET", URL: base + p, Header: ua})
		}
		return ts
	}
	for _, w := range []struct {
		name, desc string
		targets    func(base string) []vegeta.Target
		status     int // accepted besides 2xx/3xx
	}{
		{"wafaccel-json2k", "WAF on a 2 KB JSON POST (25 objects): accel off vs on", func(base string) []vegeta.Target {
			return []vegeta.Target{{Method: "POST", URL: base + "/api/customers", Body: []byte(wafbench.JSON2KB()), Header: withType("application/json")}}
		}, 0},
		{"wafaccel-json200", "WAF on a 200-byte JSON POST: accel off vs on", func(base string) []vegeta.Target {
			return []vegeta.Target{{Method: "POST", URL: base + "/api/orders", Body: []byte(wafbench.JSON200B), Header: withType("application/json")}}
		}, 0},
		{"wafaccel-get", "WAF on a benign GET with a query string: accel off vs on", func(base string) []vegeta.Target {
			return []vegeta.Target{{Method: "GET", URL: base + wafbench.GETQuery, Header: ua}}
		}, 0},
		{"wafaccel-multipart", "WAF on a 1 MiB multipart upload: accel off vs on", func(base string) []vegeta.Target {
			return []vegeta.Target{{Method: "POST", URL: base + "/upload", Body: mp, Header: withType(mpType)}}
		}, 0},
		{"wafaccel-attacks", "WAF on a mix of 50 attacks (all blocked): accel off vs on", attacks, http.StatusForbidden},
	} {
		register(Comparison{Name: w.name, Description: w.desc, Setup: func(context.Context) ([]Variant, func(), error) {
			return setupWAFAccel(w.targets, w.status)
		}})
	}
}

func setupWAFAccel(targets func(base string) []vegeta.Target, acceptStatus int) ([]Variant, func(), error) {
	var stops []func()
	cleanup := func() {
		for _, s := range stops {
			s()
		}
	}
	var variants []Variant
	for _, mode := range []string{"off", "on"} {
		ports, err := harness.FreePorts(3)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		admin, replica, waf := ports[0], ports[1], ports[2]
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	neo_waf_accel %s
	order coraza_waf first
}
http://:%d {
	bind 127.0.0.1
	neo_echo {
		replica bench-1
	}
}
http://:%d {
	bind 127.0.0.1
	`+wafbench.CorazaWAFBlock(wafaccel.SkipDirectivesBefore, wafaccel.SkipDirectivesAfter)+`
	reverse_proxy 127.0.0.1:%d
}
`, admin, mode, replica, waf, replica)
		inst, err := harness.StartProcess(harness.Options{
			Config:  cfg,
			Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
			WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", replica), fmt.Sprintf("127.0.0.1:%d", waf)},
		})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		stops = append(stops, inst.Stop)
		variants = append(variants, Variant{
			Name:         "waf accel " + mode,
			Targets:      targets(fmt.Sprintf("http://127.0.0.1:%d", waf)),
			AcceptStatus: acceptStatus,
		})
	}
	return variants, cleanup, nil
}
