// Package natstest runs real nats-servers inside test processes (never a
// mock): one place for the options every test wants (loopback only, no
// signal handlers, no logs) and for waiting until the server is ready.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a nats-server on 127.0.0.1:port (-1: a random free port). With
// storeDir set, JetStream is on and keeps its data there. The server shuts
// down when the test ends.
func Start(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: storeDir != "", StoreDir: storeDir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}
