package natskv

import (
	"context"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/modules/neo"
)

// TestWatchStopWhileDown: a watch stops promptly even when NATS is down (a
// config reload or shutdown must not hang on it).
func TestWatchStopWhileDown(t *testing.T) {
	srv := startJS(t, -1, t.TempDir())
	s, _ := newStore(t, srv.ClientURL(), "n")
	ready := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(c neo.Change) {
			if c.Ready {
				ready <- struct{}{}
			}
		})
	}()
	<-ready
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "disconnect", func() bool { return !s.nc.IsConnected() })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop while NATS is down")
	}
}
