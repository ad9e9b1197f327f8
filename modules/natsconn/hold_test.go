package natsconn

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

func holdTestConn(t *testing.T) (*server.Server, *nats.Conn) {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Port = -1
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

func waitClosed(t *testing.T, nc *nats.Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a bound for a failing test only
	for !nc.IsClosed() {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDestructWaitsForHolds: a pooled connection that a reload replaced
// stays open, and its subscriptions keep receiving, until the requests
// holding it are done; then it drains and closes.
func TestDestructWaitsForHolds(t *testing.T) {
	_, nc := holdTestConn(t)
	sub, err := nc.SubscribeSync("reply.>")
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := Hold(nc), Hold(nc)
	p := &pooledConn{name: "default", nc: nc, log: zap.NewNop()}
	if err := p.Destruct(); err != nil {
		t.Fatal(err)
	}
	// a response to a request in flight still arrives
	if err := nc.Publish("reply.x", []byte("frame")); err != nil {
		t.Fatalf("publishing on a held connection: %v", err)
	}
	if m, err := sub.NextMsg(30 * time.Second); err != nil || string(m.Data) != "frame" {
		t.Fatalf("a held connection's subscription: %v %v", m, err)
	}
	r1()
	r1() // twice: counted once
	if err := nc.Publish("reply.y", []byte("frame")); err != nil {
		t.Fatalf("one hold left, publishing: %v", err)
	}
	if m, err := sub.NextMsg(30 * time.Second); err != nil || string(m.Data) != "frame" || nc.IsClosed() {
		t.Fatalf("one hold left: %v %v closed %v", m, err, nc.IsClosed())
	}
	r2()
	waitClosed(t, nc)
}

// TestDestructHoldLimit: holds that are never released keep a replaced
// connection open at most the limit; a late release is harmless.
func TestDestructHoldLimit(t *testing.T) {
	_, nc := holdTestConn(t)
	release := Hold(nc)
	p := &pooledConn{name: "default", nc: nc, log: zap.NewNop()}
	p.done.Store(true)
	go p.closeWhenReleased(0, 50*time.Millisecond)
	waitClosed(t, nc)
	release()
	holds.Lock()
	n, idle := len(holds.n), len(holds.idle)
	holds.Unlock()
	if n != 0 || idle != 0 {
		t.Fatalf("holds remembered after the connection closed: %d counts, %d waiters", n, idle)
	}
	// without holds it closes at once
	_, nc3 := holdTestConn(t)
	p = &pooledConn{name: "default", nc: nc3, log: zap.NewNop()}
	_ = p.Destruct()
	waitClosed(t, nc3)
}
