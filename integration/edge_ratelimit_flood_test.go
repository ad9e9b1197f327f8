package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
	"github.com/projectneo/caddy-neo/modules/ratelimit"
)

// rawClient speaks HTTP/1.1 over TLS to the edge from one source address,
// on one connection: cheap enough for 100,000 clients.
type rawClient struct {
	c  *tls.Conn
	br *bufio.Reader
}

func (e *edge) dialFrom(src net.IP, cache tls.ClientSessionCache) (*rawClient, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	conn, err := d.Dial("tcp", e.https)
	if err != nil {
		return nil, err
	}
	cfg := e.roots()
	cfg.ServerName = "acme-dev.apps.localhost"
	cfg.ClientSessionCache = cache
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	return &rawClient{tc, bufio.NewReader(tc)}, nil
}

// get sends one request and returns its status and Retry-After.
func (c *rawClient) get() (int, string, error) {
	_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c.c, "GET /orders/ HTTP/1.1\r\nHost: acme-dev.apps.localhost\r\nUser-Agent: Mozilla/5.0 caddy-neo-test\r\n\r\n"); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

func (c *rawClient) close() { c.c.Close() }

// liveHeap returns the edge's live heap: the admin API's pprof endpoint
// runs a garbage collection (gc=1), then expvar reports the heap.
func liveHeap(t *testing.T, inst *harness.Instance) uint64 {
	t.Helper()
	if st, _, err := inst.Admin("GET", "/debug/pprof/heap?gc=1", nil); st != 200 || err != nil {
		t.Fatalf("GC through the admin API: %d %v", st, err)
	}
	st, body, err := inst.Admin("GET", "/debug/vars", nil)
	if st != 200 || err != nil {
		t.Fatalf("/debug/vars: %d %v", st, err)
	}
	var v struct {
		Memstats struct{ HeapAlloc uint64 } `json:"memstats"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Memstats.HeapAlloc
}

// metric returns the value of one Prometheus sample of the edge's /metrics.
func metric(t *testing.T, inst *harness.Instance, sample string) float64 {
	t.Helper()
	st, body, err := inst.Admin("GET", "/metrics", nil)
	if st != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", st, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestEdgeRateLimitFlood floods the edge (the built binary, the shipped edge
// snippet) from 100,000 distinct loopback source addresses, each sending
// its limit and one request more, while legitimate clients make requests
// within their limit and one heavy client hammers the edge throughout. The
// client zone's memory is 1 MiB (NEO_RL_CLIENT_MEMORY), a fifth of what
// 100,000 addresses need: the zone evicts, and
//   - the edge's live heap grows by no more than that 1 MiB plus a slack
//     for the rest of the process (2 MiB; unbounded, this limiter would
//     hold about 4.6 MB for 100,000 keys, and caddy-ratelimit held about
//     170 bytes per address at this limit, 17 MB, and 32 KB per address at
//     the edge's default of 1,200 events: BenchmarkMemoryPerKey);
//   - every flooding address is limited at its 3rd request;
//   - every legitimate request is served;
//   - the heavy client gets exactly its 2 requests in the window: its count
//     survives the flood.
//
// NEO_TEST_FLOOD_ADDRESSES changes the number of addresses (default 100000).
func TestEdgeRateLimitFlood(t *testing.T) {
	addresses := 100000
	if v, err := strconv.Atoi(os.Getenv("NEO_TEST_FLOOD_ADDRESSES")); err == nil && v > 0 {
		addresses = v
	}
	const (
		events  = 2
		memory  = 1 << 20
		slack   = 2 << 20
		workers = 8
		legit   = 20
	)
	e := startEdge(t,
		"NEO_RL_CLIENT_EVENTS="+strconv.Itoa(events), "NEO_RL_CLIENT_WINDOW=1h", "NEO_RL_CLIENT_MEMORY=1MiB",
		"NEO_RL_HOST_EVENTS=1000000",
		// The limiter runs before the WAF; the WAF's cost is not measured here.
		"NEO_WAF_ENGINE=Off")
	cache := tls.NewLRUClientSessionCache(64)
	// Warm up: connections, TLS, the proxy's pool, then measure.
	for i := range 200 {
		c, err := e.dialFrom(net.IPv4(127, 5, byte(i>>8), byte(i)), cache)
		if err != nil {
			t.Fatal(err)
		}
		if st, _, err := c.get(); err != nil || st != 200 {
			t.Fatalf("warm-up: %d %v", st, err)
		}
		c.close()
	}
	before := liveHeap(t, e.inst)

	// Jobs: flooding addresses 127.1.0.0 + i; legitimate clients 127.3.0.k
	// make one request each at 3 points spread over the flood.
	type job struct {
		flood int // address index, or -1
		legit int // legitimate client, for flood == -1
	}
	jobs := make(chan job, 1024)
	go func() {
		defer close(jobs)
		for i := range addresses {
			if i%(addresses/(events*legit)+1) == 0 {
				jobs <- job{flood: -1, legit: (i / (addresses/(events*legit) + 1)) % legit}
			}
			jobs <- job{flood: i}
		}
	}()
	var (
		mu                sync.Mutex
		failures          []string
		notLimited, limit atomic.Int64
		legitOK, legitBad atomic.Int64
		done              atomic.Bool
		heavyOK, heavyN   atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	var wg sync.WaitGroup
	// The heavy client: one address, one connection, requests until the
	// flood ends.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := e.dialFrom(net.IPv4(127, 4, 0, 1), cache)
		if err != nil {
			fail("heavy client: %v", err)
			return
		}
		defer c.close()
		for !done.Load() {
			st, _, err := c.get()
			if err != nil {
				fail("heavy client: %v", err)
				return
			}
			heavyN.Add(1)
			if st == 200 {
				heavyOK.Add(1)
			}
		}
	}()
	start := time.Now()
	var fwg sync.WaitGroup
	for range workers {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			for j := range jobs {
				var ip net.IP
				n := events + 1
				if j.flood < 0 {
					ip, n = net.IPv4(127, 3, 0, byte(1+j.legit)), 1
				} else {
					var b [4]byte
					binary.BigEndian.PutUint32(b[:], 127<<24|1<<16+uint32(j.flood))
					ip = net.IP(b[:])
				}
				c, err := e.dialFrom(ip, cache)
				if err != nil {
					fail("%s: %v", ip, err)
					continue
				}
				for k := range n {
					st, retry, err := c.get()
					if err != nil {
						fail("%s request %d: %v", ip, k, err)
						break
					}
					switch {
					case j.flood < 0:
						if st == 200 {
							legitOK.Add(1)
						} else {
							legitBad.Add(1)
							fail("legitimate client %s: %d", ip, st)
						}
					case k < events && st != 200:
						fail("%s request %d: %d", ip, k, st)
					case k == events && st == http.StatusTooManyRequests && retry != "":
						limit.Add(1)
					case k == events:
						notLimited.Add(1)
						fail("%s request %d: %d (Retry-After %q), want 429", ip, k, st, retry)
					}
				}
				c.close()
			}
		}()
	}
	fwg.Wait()
	done.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	after := liveHeap(t, e.inst)
	growth := int64(after) - int64(before)
	keys := metric(t, e.inst, `caddy_neo_rate_limit_keys{zone="neo_client"}`)
	stateBytes := metric(t, e.inst, `caddy_neo_rate_limit_state_bytes{zone="neo_client"}`)
	evicted := metric(t, e.inst, `caddy_neo_rate_limit_evictions_total{kind="light",zone="neo_client"}`) +
		metric(t, e.inst, `caddy_neo_rate_limit_evictions_total{kind="heavy",zone="neo_client"}`)
	t.Logf("%d addresses x %d requests + %d legitimate in %s; live heap %d -> %d (%+d bytes); neo_client: %.0f keys (capacity %d), %.0f state bytes, %.0f evicted; heavy client: %d of %d allowed",
		addresses, events+1, legitOK.Load()+legitBad.Load(), elapsed.Round(time.Second), before, after, growth,
		keys, ratelimit.ZoneCapacity(memory), stateBytes, evicted, heavyOK.Load(), heavyN.Load())
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("failures (first %d): %v", len(failures), failures)
	}
	mu.Unlock()
	if got := limit.Load(); got != int64(addresses) {
		t.Errorf("%d of %d flooding addresses limited at request %d (%d not limited)", got, addresses, events+1, notLimited.Load())
	}
	if legitBad.Load() > 0 || legitOK.Load() < events*legit {
		t.Errorf("legitimate requests: %d served, %d refused", legitOK.Load(), legitBad.Load())
	}
	if heavyOK.Load() != events {
		t.Errorf("heavy client: %d requests allowed during the flood, want exactly %d (its count was lost)", heavyOK.Load(), events)
	}
	if keys > float64(ratelimit.ZoneCapacity(memory)) || stateBytes > memory {
		t.Errorf("neo_client holds %.0f keys in %.0f bytes; bound %d keys, %d bytes", keys, stateBytes, ratelimit.ZoneCapacity(memory), memory)
	}
	if addresses > ratelimit.ZoneCapacity(memory) && evicted == 0 {
		t.Errorf("no eviction although %d addresses exceed the zone's %d keys", addresses, ratelimit.ZoneCapacity(memory))
	}
	if growth > memory+slack {
		t.Errorf("the edge's live heap grew by %d bytes: more than the zone's memory (%d) plus %d", growth, memory, slack)
	}
}
