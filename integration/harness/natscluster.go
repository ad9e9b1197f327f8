package harness

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a nats-server cluster with JetStream embedded in the current
// process, every node on loopback free ports, routes between all of them
// (cluster name "neo"), and JetStream stores under one directory per node.
// Nodes are named n1, n2, n3, ...
type Cluster struct {
	// URLs are the client URLs of the nodes, in node order (nats://127.0.0.1:port).
	URLs []string

	mu    sync.Mutex
	nodes []*server.Server
	opts  []*server.Options
}

// NATSCluster starts an n-node cluster with JetStream for the test, waits
// until it has formed (every node routed to every other) and JetStream has a
// meta leader every node knows, and shuts it down when the test ends.
func NATSCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartNATSCluster(n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// StartNATSCluster is NATSCluster without a testing.TB: JetStream stores go
// under dir; the caller must call Shutdown.
func StartNATSCluster(n int, dir string) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("nats cluster: want at least one node")
	}
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for i := range n {
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
		routes = append(routes, u)
	}
	c := &Cluster{}
	for i := range n {
		store := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(store, 0o755); err != nil {
			return nil, err
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: ports[i],
			NoSigs: true, NoLog: os.Getenv("NEO_NATS_LOG") == "",
			JetStream: true, StoreDir: store,
			JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20,
			Cluster: server.ClusterOpts{Name: "neo", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:  routes,
		}
		c.opts = append(c.opts, o)
		c.nodes = append(c.nodes, nil)
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for i := range n {
		if err := c.start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.WaitFormed(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(i int) error {
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("nats node n%d: %w", i+1, err)
	}
	if os.Getenv("NEO_NATS_LOG") != "" {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats node n%d: not ready for connections", i+1)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
	return nil
}

// running returns the nodes that are up.
func (c *Cluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.nodes {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// WaitFormed waits until every running node is routed to every other running
// node, all of them know the same JetStream meta leader, which sees every
// other node as a current peer, and the route connections have been stable
// for half a second (right after start, pooled routes are opened and
// duplicates closed; a JetStream API request that travels a route as it
// closes is lost).
func (c *Cluster) WaitFormed(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	var since time.Time
	for {
		sig, err := c.formed()
		if err == nil {
			if sig != last {
				last, since = sig, time.Now()
			} else if time.Since(since) >= 500*time.Millisecond {
				return nil
			}
		} else {
			last = ""
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("route connections keep changing")
			}
			return fmt.Errorf("nats cluster not formed after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// formed checks the cluster and returns a signature of its route connections.
func (c *Cluster) formed() (string, error) {
	nodes := c.running()
	leader := ""
	var sig []string
	for _, s := range nodes {
		rz, err := s.Routez(nil)
		if err != nil {
			return "", err
		}
		peers := map[string]bool{}
		for _, r := range rz.Routes {
			peers[r.RemoteID] = true
			sig = append(sig, fmt.Sprintf("%s>%s#%d", s.Name(), r.RemoteName, r.Rid))
		}
		if len(peers) < len(nodes)-1 {
			return "", fmt.Errorf("%s routes to %d of %d peers", s.Name(), len(peers), len(nodes)-1)
		}
		jsz, err := s.Jsz(nil)
		if err != nil {
			return "", err
		}
		if jsz.Meta == nil || jsz.Meta.Leader == "" {
			return "", fmt.Errorf("%s knows no JetStream meta leader", s.Name())
		}
		if leader != "" && jsz.Meta.Leader != leader {
			return "", fmt.Errorf("nodes disagree on the meta leader (%s, %s)", leader, jsz.Meta.Leader)
		}
		leader = jsz.Meta.Leader
		if s.JetStreamIsLeader() {
			// the leader sees every other running node as a current peer
			current := 0
			for _, p := range jsz.Meta.Replicas {
				if p.Current && !p.Offline {
					current++
				}
			}
			if current < len(nodes)-1 {
				return "", fmt.Errorf("meta leader %s has %d of %d peers current", s.Name(), current, len(nodes)-1)
			}
		}
	}
	sort.Strings(sig)
	return strings.Join(sig, " "), nil
}

// Node returns node i (0-based), nil when it is down.
func (c *Cluster) Node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Servers returns the client URLs joined with spaces, as a Caddyfile
// `servers` line takes them.
func (c *Cluster) Servers() string { return strings.Join(c.URLs, " ") }

// NodeOf returns the index of the node that has a client connection named
// name (the `name` of a caddy-neo nats connection), or -1.
func (c *Cluster) NodeOf(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.nodes {
		if s == nil {
			continue
		}
		cz, err := s.Connz(&server.ConnzOptions{Limit: 1024})
		if err != nil {
			continue
		}
		for _, ci := range cz.Conns {
			if ci.Name == name {
				return i
			}
		}
	}
	return -1
}

// Kill shuts node i down at once (its clients see their connection close,
// as when the process dies). It is safe to call for a node that is down.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again with the same ports and store after Kill.
func (c *Cluster) Restart(i int) error {
	if c.Node(i) != nil {
		return fmt.Errorf("nats node n%d is running", i+1)
	}
	return c.start(i)
}

// Shutdown stops every node. It is safe to call more than once.
func (c *Cluster) Shutdown() {
	for i := range c.nodes {
		c.Kill(i)
	}
}
