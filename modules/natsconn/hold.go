package natsconn

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// HoldLimit bounds how long a connection that its configuration released
// (a reload changed it: new credentials, servers) stays open for the holds
// still on it.
var HoldLimit = 5 * time.Minute

// ReleaseGrace is how long a replaced connection stays open even without
// holds: requests the old configuration accepted just before the reload
// may still be on their way to the transport (reading a body, in the WAF).
var ReleaseGrace = 2 * time.Second

// holds counts, per connection, the users that need it open whatever its
// configuration does: the reply subscriptions of requests in flight.
var holds = struct {
	sync.Mutex
	n    map[*nats.Conn]int
	idle map[*nats.Conn]chan struct{}
}{n: map[*nats.Conn]int{}, idle: map[*nats.Conn]chan struct{}{}}

// Hold keeps nc open until release is called: when a reload replaces the
// connection while requests still stream through it, it drains only after
// their holds are released (or after HoldLimit). The HTTP-over-NATS muxes
// hold their connection for as long as they are subscribed, which is until
// their last stream ends. release may be called more than once.
func Hold(nc *nats.Conn) (release func()) {
	holds.Lock()
	holds.n[nc]++
	holds.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			holds.Lock()
			defer holds.Unlock()
			n, ok := holds.n[nc]
			if !ok {
				return // forgotten: the connection closed at HoldLimit
			}
			if n > 1 {
				holds.n[nc] = n - 1
				return
			}
			delete(holds.n, nc)
			if ch, ok := holds.idle[nc]; ok {
				close(ch)
				delete(holds.idle, nc)
			}
		})
	}
}

// waitReleased waits until nc has no holds, or limit passed; it returns
// the holds left.
func waitReleased(nc *nats.Conn, limit time.Duration) int {
	holds.Lock()
	if holds.n[nc] == 0 {
		holds.Unlock()
		return 0
	}
	ch, ok := holds.idle[nc]
	if !ok {
		ch = make(chan struct{})
		holds.idle[nc] = ch
	}
	holds.Unlock()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-ch:
		return 0
	case <-t.C:
		holds.Lock()
		defer holds.Unlock()
		// the connection closes now: forget it (a late release is a no-op)
		left := holds.n[nc]
		delete(holds.n, nc)
		delete(holds.idle, nc)
		return left
	}
}
