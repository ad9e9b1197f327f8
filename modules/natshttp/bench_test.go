package natshttp

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkChains compares, side by side over the same in-process Caddy and
// replica, edge → NATS → gateway → replica with edge → HTTP → stage server →
// replica. Run: go test -run XXX -bench Chains ./modules/natshttp
func BenchmarkChains(b *testing.B) {
	s := startNATS(b, 0)
	tp := newTopo(b, s)
	tp.gateways = []map[string]any{gw("az-a")}
	httpEdge := freePort(b)
	cfg := string(tp.json(b))
	// a second edge that proxies over HTTP to the stage server
	cfg = replaceOnce(cfg, `"stage":{`, fmt.Sprintf(`"httpedge":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:%d"}],"headers":{"request":{"set":{"Neo-Tenant":["acme"],"Neo-App":["orders"]}}}}]}]},"stage":{`, httpEdge, tp.stagePort))
	if err := loadRaw([]byte(cfg)); err != nil {
		b.Fatal(err)
	}
	results := map[string]float64{}
	for _, c := range []struct{ name, url string }{
		{"http", fmt.Sprintf("http://127.0.0.1:%d/orders/b", httpEdge)},
		{"nats", tp.url("/orders/b")},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			start := time.Now()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(c.url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			results[c.name] = float64(b.N) / time.Since(start).Seconds()
		})
	}
	if results["http"] > 0 {
		b.Logf("NATS/HTTP throughput ratio %.2f× (%.0f vs %.0f req/s)", results["nats"]/results["http"], results["nats"], results["http"])
	}
}
