package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name:        "cluster",
		Description: "one edge vs two edges (az-a, az-b) of the cluster topology (three-node NATS cluster with JetStream, a prod stage gateway process per zone, a replica per zone), and one all-in-one process (embedded NATS, in-process gateway); GET over HTTPS",
		Setup:       setupCluster,
	})
}

func setupCluster(context.Context) ([]Variant, func(), error) {
	dir, err := os.MkdirTemp("", "neo-bench-cluster-")
	if err != nil {
		return nil, nil, err
	}
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) ([]Variant, func(), error) {
		cleanup()
		return nil, nil, err
	}
	nc, err := harness.StartNATSCluster(3, filepath.Join(dir, "nats"))
	if err != nil {
		return fail(err)
	}
	stops = append(stops, nc.Shutdown)
	zones := []string{"az-a", "az-b"}
	tenant := harness.ClusterTenant{Replicas: map[string]string{}}
	for _, z := range zones {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"replica":"demo-orders-%s","gateway":%q}`, z, r.Header.Get("X-Test-Gateway"))
		})}
		go srv.Serve(l)
		stops = append(stops, func() { srv.Close() })
		tenant.Replicas[z] = l.Addr().String()
	}
	ports, err := harness.FreePorts(15)
	if err != nil {
		return fail(err)
	}
	other := map[string]string{"az-a": "az-b", "az-b": "az-a"}
	start := func(cfg string, admin int, wait string) (*harness.Instance, error) {
		inst, err := harness.StartProcess(harness.Options{Config: cfg, Admin: fmt.Sprintf("127.0.0.1:%d", admin), WaitFor: []string{wait}})
		if err == nil {
			stops = append(stops, inst.Stop)
		}
		return inst, err
	}
	for i, z := range zones {
		n := harness.ClusterNode{Zone: z, ZoneOrder: []string{other[z]}, Admin: ports[i], Stage: ports[2+i],
			NATS: nc.URLs, StoreDir: filepath.Join(dir, "gw-"+z), Tenants: tenant.Block()}
		if _, err := start(harness.ClusterGatewayCaddyfile(n), n.Admin, fmt.Sprintf("127.0.0.1:%d", n.Stage)); err != nil {
			return fail(err)
		}
	}
	roots := x509.NewCertPool()
	var urls []string
	for i, z := range zones {
		n := harness.ClusterNode{Zone: z, ZoneOrder: []string{other[z]}, Admin: ports[4+i], HTTPS: ports[6+i], HTTP: ports[8+i],
			NATS: nc.URLs, StoreDir: filepath.Join(dir, "edge-"+z), Tenants: tenant.Block()}
		inst, err := start(harness.ClusterEdgeCaddyfile(n), n.Admin, fmt.Sprintf("127.0.0.1:%d", n.HTTPS))
		if err != nil {
			return fail(err)
		}
		// each edge has its own internal CA until certificates are shared
		if err := appendRoot(roots, inst); err != nil {
			return fail(err)
		}
		urls = append(urls, fmt.Sprintf("https://demo.apps.localhost:%d/orders/items?id=42", n.HTTPS))
	}
	// the all-in-one process: edge, embedded NATS server and stage gateway
	// in one caddy, the same tenant and replicas
	aio := harness.ClusterNode{Zone: "az-a", ZoneOrder: []string{"az-b"}, Admin: ports[10], HTTPS: ports[11], HTTP: ports[12], Stage: ports[13],
		StoreDir: filepath.Join(dir, "aio"), Tenants: tenant.Block()}
	inst, err := start(allInOneCaddyfile(aio, ports[14]), aio.Admin, fmt.Sprintf("127.0.0.1:%d", aio.HTTPS))
	if err != nil {
		return fail(err)
	}
	if err := appendRoot(roots, inst); err != nil {
		return fail(err)
	}
	aioURL := fmt.Sprintf("https://demo.apps.localhost:%d/orders/items?id=42", aio.HTTPS)
	client := loopbackClient(roots)
	for _, u := range append(urls, aioURL) {
		if err := harness.WaitServing(client, u, 30*time.Second); err != nil {
			return fail(err)
		}
	}
	target := func(us ...string) []vegeta.Target {
		var ts []vegeta.Target
		for _, u := range us {
			ts = append(ts, vegeta.Target{Method: "GET", URL: u})
		}
		return ts
	}
	return []Variant{
		{Name: "one edge (az-a)", Targets: target(urls[0]), Client: client},
		{Name: "two edges (az-a, az-b)", Targets: target(urls...), Client: client},
		{Name: "all-in-one process", Targets: target(aioURL), Client: client},
	}, cleanup, nil
}

// allInOneCaddyfile is the cluster edge of n with an embedded NATS server
// (listening on natsPort) and the prod stage gateway of its zone in the
// same process.
func allInOneCaddyfile(n harness.ClusterNode, natsPort int) string {
	n.NATS = []string{fmt.Sprintf("nats://127.0.0.1:%d", natsPort)}
	edge := harness.ClusterEdgeCaddyfile(n)
	gw := harness.ClusterGatewayCaddyfile(n)
	// the gateway's stage server, gateway app and site join the edge's config
	extra := fmt.Sprintf(`	servers 127.0.0.1:%d {
		name stage
	}
	neo_nats_gateway {
		server stage
		stage prod
		zone %s
	}
`, n.Stage, n.Zone)
	edge = strings.Replace(edge, "\tneo_nats {\n", extra+"\tneo_nats {\n\t\tembedded 127.0.0.1:"+fmt.Sprint(natsPort)+" {\n\t\t\tanonymous\n\t\t}\n", 1)
	site := gw[strings.Index(gw, "\nhttp://"):]
	return edge + site
}

// appendRoot adds the root of inst's internal CA "local" to pool.
func appendRoot(pool *x509.CertPool, inst *harness.Instance) error {
	status, body, err := inst.Admin("GET", "/pki/ca/local", nil)
	if err != nil {
		return err
	}
	var info struct {
		Root string `json:"root_certificate"`
	}
	if err := json.Unmarshal(body, &info); err != nil || status != 200 || !pool.AppendCertsFromPEM([]byte(info.Root)) {
		return fmt.Errorf("no root certificate from %s (status %d): %v", inst.Opts.Admin, status, err)
	}
	return nil
}

// loopbackClient dials 127.0.0.1 at the URL's port for any host name and
// trusts roots; HTTP/2 is attempted.
func loopbackClient(roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 1024,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
