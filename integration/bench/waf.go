package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "waf",
		Description: "the edge route (limits, rate limits, WAF) with the WAF off vs on, benign GET and 2 KB JSON POST, vs the echo replica directly",
		Setup:       setupWAF,
	})
}

// JSONPost2K is a benign 2 KB JSON body of 25 small objects.
func JSONPost2K() string {
	var b strings.Builder
	b.WriteString(`{"order":"A-1042","customer":"Jane O'Connor","lines":[`)
	for i := 0; i < 25; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%04d","name":"Item %d","qty":%d,"price":%d.99,"gift":false}`, i, i, i%5+1, i+3)
	}
	b.WriteString(`],"note":"Leave it at the neighbour's door"}`)
	return b.String()
}

var wafHeader = http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Mozilla/5.0 bench"}, "Accept": {"application/json"}}

// wafGET is a benign GET with a query string to the server on port.
func wafGET(port int) []vegeta.Target {
	return []vegeta.Target{{Method: "GET", URL: fmt.Sprintf("http://127.0.0.1:%d/orders/search?q=blue+shoes&page=2&sort=-created", port), Header: wafHeader}}
}

// wafPOST is a benign 2 KB JSON POST to the server on port.
func wafPOST(port int) []vegeta.Target {
	return []vegeta.Target{{Method: "POST", URL: fmt.Sprintf("http://127.0.0.1:%d/orders/items", port), Body: []byte(JSONPost2K()), Header: wafHeader}}
}

// startEdgeForBench runs the edge snippet over plain HTTP in front of an
// echo replica, with rate limits high enough not to interfere.
func startEdgeForBench(engine string) (*harness.Instance, int, int, error) {
	ports, err := harness.FreePorts(3)
	if err != nil {
		return nil, 0, 0, err
	}
	admin, edge, replica := ports[0], ports[1], ports[2]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	import %[4]s/caddyfiles/snippets/edge-global.caddy
}
import %[4]s/caddyfiles/snippets/edge.caddy
http://:%[2]d {
	bind 127.0.0.1
	import neo_edge {
		reverse_proxy 127.0.0.1:%[3]d
	}
}
http://:%[3]d {
	bind 127.0.0.1
	neo_echo
}
`, admin, edge, replica, harness.RepoRoot())
	inst, err := harness.StartProcess(harness.Options{
		Config: cfg,
		Admin:  fmt.Sprintf("127.0.0.1:%d", admin),
		Env: []string{"NEO_WAF_ENGINE=" + engine, "NEO_RL_CLIENT_EVENTS=100000", "NEO_RL_CLIENT_WINDOW=1s", "NEO_RL_HOST_EVENTS=100000", "NEO_RL_HOST_WINDOW=1s",
			"NEO_WAF_AUDIT_LOG=/dev/null"},
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", edge), fmt.Sprintf("127.0.0.1:%d", replica)},
	})
	return inst, edge, replica, err
}

func setupWAF(context.Context) ([]Variant, func(), error) {
	off, offPort, replica, err := startEdgeForBench("Off")
	if err != nil {
		return nil, nil, err
	}
	on, onPort, _, err := startEdgeForBench("On")
	if err != nil {
		off.Stop()
		return nil, nil, err
	}
	get, post := wafGET, wafPOST
	return []Variant{
			{Name: "GET direct to replica", Targets: get(replica)},
			{Name: "GET edge, WAF off", Targets: get(offPort)},
			{Name: "GET edge, WAF on (CRS PL1)", Targets: get(onPort)},
			{Name: "POST 2KB JSON edge, WAF off", Targets: post(offPort)},
			{Name: "POST 2KB JSON edge, WAF on", Targets: post(onPort)},
		}, func() {
			off.Stop()
			on.Stop()
		}, nil
}
