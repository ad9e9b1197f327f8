package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "nats",
		Description: "edge → HTTP → stage server → replica vs edge → NATS → stage gateway → replica (same process and replica); large transfers: go run ./integration/bench/nats",
		Setup:       setupNATS,
	})
}

func setupNATS(context.Context) ([]Variant, func(), error) {
	ports, err := harness.FreePorts(6)
	if err != nil {
		return nil, nil, err
	}
	admin, natsEdge, httpEdge, stage, replica, natsPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: natsPort, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, nil, err
	}
	ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("nats-server not ready")
	}
	cfg := harness.NATSChainCaddyfile(admin, natsEdge, httpEdge, stage, replica, natsPort, false, 0)
	inst, err := harness.StartProcess(harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", natsEdge), fmt.Sprintf("127.0.0.1:%d", replica)},
	})
	if err != nil {
		ns.Shutdown()
		return nil, nil, err
	}
	target := func(port int) []vegeta.Target {
		return []vegeta.Target{{Method: "GET", URL: fmt.Sprintf("http://127.0.0.1:%d/orders/items?id=42", port)}}
	}
	return []Variant{
			{Name: "edge → HTTP → gateway → replica", Targets: target(httpEdge)},
			{Name: "edge → NATS → gateway → replica", Targets: target(natsEdge)},
		}, func() {
			inst.Stop()
			ns.Shutdown()
		}, nil
}
