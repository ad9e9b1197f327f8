package main

import (
	"context"
	"fmt"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "proxy",
		Description: "plain Caddy reverse_proxy to an echo replica vs the echo replica directly",
		Setup:       setupProxy,
	})
}

func setupProxy(context.Context) ([]Variant, func(), error) {
	ports, err := harness.FreePorts(3)
	if err != nil {
		return nil, nil, err
	}
	admin, replica, proxy := ports[0], ports[1], ports[2]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
}
http://:%d {
	bind 127.0.0.1
	neo_echo {
		replica bench-1
	}
}
http://:%d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%d
}
`, admin, replica, proxy, replica)
	inst, err := harness.StartProcess(harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", replica), fmt.Sprintf("127.0.0.1:%d", proxy)},
	})
	if err != nil {
		return nil, nil, err
	}
	target := func(port int) []vegeta.Target {
		return []vegeta.Target{{Method: "GET", URL: fmt.Sprintf("http://127.0.0.1:%d/orders/items?id=42", port)}}
	}
	return []Variant{
		{Name: "direct to echo replica", Targets: target(replica)},
		{Name: "caddy reverse_proxy", Targets: target(proxy)},
	}, inst.Stop, nil
}
