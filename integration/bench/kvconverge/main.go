// Command kvconverge measures how fast the tenant registry converges across
// nodes sharing it through a NATS JetStream key-value bucket
// (neo.stores.nats): it writes n tenant changes through node 1's admin API,
// one at a time, and polls the admin API of every other node until each
// shows the change. It prints p50, p99 and max of
//
//   - write: the admin PUT on node 1 (validation, JetStream acknowledgement,
//     local snapshot), side by side with the same PUT on a node using the
//     file store (fsync'd JSON file), the single-node baseline;
//
//   - convergence: from the start of the PUT on node 1 until node 2 shows
//     the change (what an operator waits for);
//
//   - propagation: from node 1's answer until node 2 shows the change.
//
//     go run ./integration/bench/kvconverge [-n 1000] [-tenants 100]
//
// NEO_CADDY_BIN names a prebuilt caddy binary (else it is built). The
// nats-server (JetStream, file storage) runs in this program; everything
// listens on 127.0.0.1 ports chosen at random. Bounded: n changes, each
// given at most 5 s.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/projectneo/caddy-neo/integration/harness"
)

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

func do(method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Neo-Actor", "kvconverge")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func tenant(i int) []byte {
	return fmt.Appendf(nil, `{"apps":{"crm":{"public":true,"stages":{"prod":{"replicas":[{"address":"10.%d.%d.%d:8080","zone":"az-a"}]}}}}}`, i>>16&255, i>>8&255, i&255)
}

type stats []time.Duration

func (s stats) pct(p float64) time.Duration {
	c := append(stats(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[min(len(c)-1, int(float64(len(c))*p))]
}

func (s stats) String() string {
	return fmt.Sprintf("p50 %-10v p99 %-10v max %-10v", s.pct(0.50).Round(time.Microsecond), s.pct(0.99).Round(time.Microsecond), s.pct(1).Round(time.Microsecond))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	n := flag.Int("n", 1000, "changes to measure")
	tenants := flag.Int("tenants", 100, "distinct tenants the changes cycle through")
	nodes := flag.Int("nodes", 2, "caddy nodes sharing the bucket (2 to 5)")
	flag.Parse()
	*nodes = max(2, min(5, *nodes))

	ports, err := harness.FreePorts(3 + 2**nodes)
	if err != nil {
		fail("%v", err)
	}
	natsPort := ports[0]
	dir, _ := os.MkdirTemp("", "neo-kvconverge-")
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: natsPort, JetStream: true, StoreDir: dir + "/js", NoSigs: true, NoLog: true})
	if err != nil {
		fail("%v", err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		fail("nats-server not ready")
	}
	start := func(cfg string, admin, httpPort int) *harness.Instance {
		inst, err := harness.StartProcess(harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", admin),
			WaitFor: []string{fmt.Sprintf("127.0.0.1:%d", httpPort)}})
		if err != nil {
			fail("%v", err)
		}
		return inst
	}
	nf := start(harness.FileNodeCaddyfile(ports[1], ports[2], natsPort, dir+"/file"), ports[1], ports[2])
	defer nf.Stop()
	var insts []*harness.Instance
	for k := range *nodes {
		a, h := ports[3+2*k], ports[4+2*k]
		inst := start(harness.KVNodeCaddyfile(a, h, natsPort, fmt.Sprintf("node%d", k+1)), a, h)
		defer inst.Stop()
		insts = append(insts, inst)
	}
	n1, followers := insts[0], insts[1:]

	var writeKV, writeFile, conv, prop stats
	for i := range *n {
		name := fmt.Sprintf("t%04d", i%*tenants)
		body := tenant(i)
		want := fmt.Appendf(nil, `"10.%d.%d.%d:8080"`, i>>16&255, i>>8&255, i&255)

		t0 := time.Now()
		st, out, err := do(http.MethodPut, n1.AdminURL("/neo/tenants/"+name), body)
		t1 := time.Now()
		if err != nil || st/100 != 2 {
			fail("PUT %s on node 1: %d %s %v", name, st, out, err)
		}
		for k, f := range followers {
			for {
				st, out, err := do(http.MethodGet, f.AdminURL("/neo/tenants/"+name), nil)
				if err == nil && st == 200 && bytes.Contains(out, want) {
					break
				}
				if time.Since(t0) > 5*time.Second {
					fail("change %d not seen on node %d after 5 s: %d %s %v\nlogs:\n%s", i, k+2, st, out, err, f.Logs())
				}
			}
		}
		t2 := time.Now()
		writeKV = append(writeKV, t1.Sub(t0))
		conv = append(conv, t2.Sub(t0))
		prop = append(prop, t2.Sub(t1))

		f0 := time.Now()
		st, out, err = do(http.MethodPut, nf.AdminURL("/neo/tenants/"+name), body)
		if err != nil || st/100 != 2 {
			fail("PUT %s on the file-store node: %d %s %v", name, st, out, err)
		}
		writeFile = append(writeFile, time.Since(f0))
	}
	fmt.Printf("registry convergence over a JetStream KV bucket: %d changes through node 1's admin API, %d tenants, %d nodes + 1 file-store node, nats-server with file storage, loopback\n", *n, *tenants, *nodes)
	fmt.Printf("  write, file store (1 node)    %s\n", writeFile)
	fmt.Printf("  write, nats store (node 1)    %s  ratio p50 %.2fx\n", writeKV, float64(writeKV.pct(0.5))/float64(writeFile.pct(0.5)))
	fmt.Printf("  convergence (PUT start to visible on every other node)   %s\n", conv)
	fmt.Printf("  propagation (PUT answered to visible on every other node) %s\n", prop)
	over := 0
	for _, d := range conv {
		if d > time.Second {
			over++
		}
	}
	fmt.Printf("  changes converged within 1 s: %d of %d\n", len(conv)-over, len(conv))
}
