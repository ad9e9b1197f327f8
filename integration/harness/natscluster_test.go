package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSCluster checks the harness: three nodes form a cluster whose
// JetStream keeps an R3 key-value bucket, a write stays readable after the
// node a client used is killed, and the node rejoins after a restart.
func TestNATSCluster(t *testing.T) {
	c := NATSCluster(t, 3)
	nc, err := nats.Connect(strings.Join(c.URLs, ","), nats.Name("harness-test"), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "harness", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	victim := c.NodeOf("harness-test")
	if victim < 0 {
		t.Fatal("client connection not found on any node")
	}
	c.Kill(victim)
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, err := kv.Get(ctx, "k")
		if err == nil && string(e.Value()) == "v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("R3 value not readable after node n%d was killed: %v", victim+1, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a write needs the bucket's stream leader: elected again when it was
	// on the killed node
	for {
		_, err := kv.Put(ctx, "k", []byte("v2"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write with two of three nodes: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFormed(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
