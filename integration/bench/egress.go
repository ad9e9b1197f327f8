package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "egress",
		Description: "neo_egress gateway: http:// and https:// (CONNECT tunnel) through the gateway vs direct to an echo 'external API'",
		Setup:       setupEgress,
	})
}

// setupEgress runs one caddy process with an echo "external API" on
// 127.0.0.10 (http and https with Caddy's internal CA) and an egress gateway
// on 127.0.0.1 whose outbound source is 127.0.0.2. The load generator calls
// from 127.0.0.21, an address the gateway maps to tenant bench.
//
// Variants: keep-alive (a tunnel or upstream connection is reused, so this is
// the steady-state cost per request), and new connection per request (for
// https this includes the CONNECT round trip and the TLS handshake, so the
// difference to direct is the tunnel setup latency).
func setupEgress(context.Context) ([]Variant, func(), error) {
	ports, err := harness.FreePorts(4)
	if err != nil {
		return nil, nil, err
	}
	admin, plain, secure, gw := ports[0], ports[1], ports[2], ports[3]
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	auto_https disable_redirects
	local_certs
	skip_install_trust
}
http://:%[2]d {
	bind 127.0.0.10
	neo_echo {
		replica bench-external
	}
}
https://api.bench.localhost:%[3]d {
	bind 127.0.0.10
	tls internal
	neo_echo {
		replica bench-external
	}
}
http://:%[4]d {
	bind 127.0.0.1
	neo_egress {
		zone az-a
		source_address 127.0.0.2
		caller 127.0.0.21 bench prod app
		tenant bench {
			allow api.bench.localhost:*
		}
		treat_as_external 127.0.0.10
		static_host api.bench.localhost 127.0.0.10
		max_conns_per_tenant 0
	}
}
`, admin, plain, secure, gw)
	inst, err := harness.StartProcess(harness.Options{
		Config:  cfg,
		Admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		WaitFor: []string{fmt.Sprintf("127.0.0.10:%d", plain), fmt.Sprintf("127.0.0.10:%d", secure), fmt.Sprintf("127.0.0.1:%d", gw)},
	})
	if err != nil {
		return nil, nil, err
	}
	roots, err := inst.RootPool("local")
	if err != nil {
		inst.Stop()
		return nil, nil, err
	}
	proxyURL := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", gw)}
	client := func(viaGateway, keepAlive bool) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 21)}}
		tr := &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: roots, ClientSessionCache: nil},
			MaxIdleConnsPerHost: 1024,
			DisableKeepAlives:   !keepAlive,
		}
		if viaGateway {
			tr.Proxy = http.ProxyURL(proxyURL)
		} else {
			// Direct: the name resolves to the external API's address.
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.10", port))
			}
		}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	httpT := []vegeta.Target{{Method: "GET", URL: fmt.Sprintf("http://api.bench.localhost:%d/v1/orders?id=42", plain)}}
	httpsT := []vegeta.Target{{Method: "GET", URL: fmt.Sprintf("https://api.bench.localhost:%d/v1/orders?id=42", secure)}}
	// Wait for the internal certificate of the https external API.
	if err := harness.WaitServing(client(false, true), httpsT[0].URL, 20*time.Second); err != nil {
		inst.Stop()
		return nil, nil, err
	}
	return []Variant{
		{Name: "http direct", Targets: httpT, Client: client(false, true)},
		{Name: "http via gateway", Targets: httpT, Client: client(true, true), Baseline: 0},
		{Name: "https direct", Targets: httpsT, Client: client(false, true)},
		{Name: "https via CONNECT", Targets: httpsT, Client: client(true, true), Baseline: 2},
		{Name: "https direct, new conn", Targets: httpsT, Client: client(false, false)},
		{Name: "https CONNECT, new tunnel", Targets: httpsT, Client: client(true, false), Baseline: 4},
	}, inst.Stop, nil
}
