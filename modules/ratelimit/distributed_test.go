package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
)

// productionNATS runs a nats-server with JetStream and the production
// users and permissions (caddyfiles/nats/cluster/authorization.conf; each
// user's password is "pw-<user>").
func productionNATS(t *testing.T) *server.Server {
	t.Helper()
	for _, u := range []string{"EDGE", "PLATFORM", "GW_PROD", "GW_DEV", "GW_PROD_ACME", "MONITOR"} {
		t.Setenv("NEO_NATS_"+u+"_PASSWORD", "pw-"+strings.ReplaceAll(strings.ToLower(u), "_", "-"))
	}
	dir := t.TempDir()
	auth, err := os.ReadFile(filepath.Join("..", "..", "caddyfiles", "nats", "cluster", "authorization.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ninclude ./authorization.conf\n", filepath.Join(dir, "js"))
	for name, body := range map[string][]byte{"authorization.conf": auth, "nats.conf": []byte(conf)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// testZone is a zone provisioned as Handler.Provision does, with its own table.
func testZone(t *testing.T, name string, events int, window time.Duration, distributed bool) *Zone {
	t.Helper()
	z := &Zone{Key: "{http.request.header.X-Key}", Events: events, Window: caddy.Duration(window), Memory: 1 << 20, IPv4Prefix: 32, IPv6Prefix: 64, name: name}
	if err := z.validate(distributed); err != nil {
		t.Fatal(err)
	}
	z.distributed = distributed
	z.limits = limits{events: uint32(events), window: int64(window), aligned: distributed, pend: distributed, promoteAt: uint32(max(2, (events+15)/16))}
	z.stats = newZoneMetrics(name)
	z.log = &logBudget{tokens: logBurst}
	z.table = newTable(z.Memory, distributed, z.stats)
	return z
}

type natsEdge struct {
	z   *Zone
	key uint64
}

// hits counts n events of the edge's key and returns how many were allowed.
func (e natsEdge) hits(n int) int {
	ok := 0
	for range n {
		if e.z.table.hit(e.key, clock(true), &e.z.limits).allowed {
			ok++
		}
	}
	return ok
}

// known is the count the edge knows for its key in the current window.
func (e natsEdge) known() uint32 {
	t := e.z.table
	m := t.mix(e.key)
	s := t.shard(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := s.find(e.key, m)
	if i < 0 {
		return 0
	}
	roll(&s.ents[i], clock(true), e.z.limits.window)
	return s.ents[i].curr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two edges share one zone's counts through JetStream counters, each
// connected as the production edge user (authorization.conf): once synced,
// the limit holds across both; the stream's counter is the number of
// requests allowed cluster-wide. A stage gateway's user cannot write a
// counter (a hostile gateway cannot exhaust another tenant's limits).
func TestDistributedCounts(t *testing.T) {
	s := productionNATS(t)
	var mu sync.Mutex
	var violations []string
	const limit = 20
	key := keyHash(true, maphash.Seed{}, []byte("a"))
	edge := func(name string) natsEdge {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("edge", "pw-edge"), nats.CustomInboxPrefix("_EDGE"), nats.Name(name),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				mu.Lock()
				violations = append(violations, err.Error())
				mu.Unlock()
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		z := testZone(t, "shared", limit, time.Hour, true)
		d := &Distributed{Interval: caddy.Duration(50 * time.Millisecond)}
		d.provision()
		if err := d.validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sy, err := d.run(ctx, js, []*Zone{z}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); sy.stop() })
		return natsEdge{z, key}
	}
	e1, e2 := edge("edge1"), edge("edge2")

	if ok := e1.hits(15); ok != 15 {
		t.Fatalf("edge1 allowed %d of 15", ok)
	}
	// edge2 has not seen the key: it learns edge1's count from the stream.
	waitFor(t, "edge2 to learn edge1's 15", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(violations) > 0 {
			t.Fatalf("permission violations of the edge user: %v", violations)
		}
		return e2.known() >= 15
	})
	if ok := e2.hits(10); ok != limit-15 {
		t.Fatalf("edge2 allowed %d after sync, want %d (limit %d, 15 used on edge1)", ok, limit-15, limit)
	}
	waitFor(t, "edge1 to learn the total of 20", func() bool { return e1.known() >= limit })
	if ok := e1.hits(5); ok != 0 {
		t.Fatalf("edge1 allowed %d after the limit was used up across both edges", ok)
	}
	// The counter in the stream holds what both edges allowed.
	reader, err := nats.Connect(s.ClientURL(), nats.UserInfo("edge", "pw-edge"), nats.CustomInboxPrefix("_EDGE"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rjs, _ := jetstream.New(reader)
	str, err := rjs.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	win := clock(true) / int64(time.Hour)
	subj := fmt.Sprintf("%s.shared.%d.%s", DefaultSubject, win, WireKey("a"))
	counter := func() string {
		t.Helper()
		// Read as the edge reads: the ordered consumer's last message.
		c, err := str.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("counter %s: %v", subj, err)
		}
		return string(m.Data())
	}
	if v := counter(); v != `{"val":"20"}` {
		t.Fatalf("counter %s = %s, want 20", subj, v)
	}
	// A gateway of another tenant tries to add to the counter: the server
	// refuses it (a permissions violation).
	refused := make(chan error, 1)
	gw, err := nats.Connect(s.ClientURL(), nats.UserInfo("gw-prod-acme", "pw-gw-prod-acme"), nats.CustomInboxPrefix("_GW.prod-acme"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case refused <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if err := gw.PublishMsg(&nats.Msg{Subject: subj, Header: nats.Header{"Nats-Incr": []string{"+1000"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refused:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("the gateway's publish: %v, want a permissions violation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway's increment was not refused")
	}
	if v := counter(); v != `{"val":"20"}` {
		t.Fatalf("counter %s = %s after the gateway's attempt, want 20", subj, v)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("permission violations of the edge user: %v", violations)
	}
}

// Without JetStream the config is refused with a message naming it; with
// the stream unreachable at first, the edge counts locally and binds later.
func TestDistributedNoJetStream(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	d := &Distributed{}
	d.provision()
	_, err = d.run(context.Background(), js, []*Zone{testZone(t, "z", 5, time.Minute, true)}, zaptest.NewLogger(t))
	if err == nil {
		t.Fatal("no error without JetStream")
	}
	t.Log(err)
}
