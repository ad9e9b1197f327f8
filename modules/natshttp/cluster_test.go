package natshttp

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

// TestClusterNodeKilled runs a three-node nats-server cluster, serves requests
// through it, kills the node the caddy connection uses and checks that edge
// and gateways reconnect and requests resume.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	clusterPorts := []int{freePort(t), freePort(t), freePort(t)}
	var routes []*url.URL
	for _, p := range clusterPorts {
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", p))
		routes = append(routes, u)
	}
	var nodes []*server.Server
	var urls []string
	for i := range 3 {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "neo", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(5 * time.Second) {
			t.Fatal("node not ready")
		}
		nodes = append(nodes, s)
		urls = append(urls, s.ClientURL())
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range nodes {
		for s.NumRoutes() < 2 {
			if time.Now().After(deadline) {
				t.Fatal("cluster did not form")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tp := newTopo(t, nodes[0])
	tp.transport = map[string]any{"response_header_timeout": "2s", "chunk_timeout": "2s"}
	cfg := string(tp.json(t))
	// every node in the connection's server list
	cfg = replaceOnce(cfg, fmt.Sprintf(`"servers":[%q]`, urls[0]), fmt.Sprintf(`"servers":[%q,%q,%q],"reconnect_wait":"50ms","max_reconnect_wait":"500ms"`, urls[0], urls[1], urls[2]))
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	waitOK := func(what string) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if code, _ := zoneOf(t, tp); code == 200 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no successful request within 5s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOK("before")
	app, _ := caddy.ActiveContext().App("neo_nats")
	nc, _ := app.(*natsconn.App).Conn("")
	victim := -1
	for i, s := range nodes {
		if s.ID() == nc.ConnectedServerId() {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("connected to no known node")
	}
	start := time.Now()
	nodes[victim].Shutdown()
	waitOK("after the kill")
	t.Logf("requests resumed %v after node n%d was killed", time.Since(start), victim)
	for i := 0; i < 20; i++ {
		if code, _ := zoneOf(t, tp); code != 200 {
			t.Fatalf("request %d after recovery: %d", i, code)
		}
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	panic("not found: " + old)
}
