package natsstorage

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Several edges, each with its own connection, contend for one lock: at most
// one is ever inside the critical section, and every attempt gets in.
func TestLockConcurrentEdges(t *testing.T) {
	s := startJetStream(t)
	const edges, rounds = 4, 6
	var inside, maxInside, entered atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, edges*rounds)
	for i := 0; i < edges; i++ {
		e := newEdge(t, s, Settings{LockTTL: 5 * time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				if err := e.Lock(ctx, "issue_cert_*.example.com"); err != nil {
					cancel()
					errs <- err
					return
				}
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				entered.Add(1)
				time.Sleep(5 * time.Millisecond)
				inside.Add(-1)
				if err := e.Unlock(ctx, "issue_cert_*.example.com"); err != nil {
					errs <- err
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if maxInside.Load() != 1 {
		t.Errorf("%d holders at once; want 1", maxInside.Load())
	}
	if entered.Load() != edges*rounds {
		t.Errorf("entered %d times; want %d", entered.Load(), edges*rounds)
	}
}

// A holder refreshes its lock: it is not taken from it after the TTL.
func TestLockHeldPastTTL(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{LockTTL: 2 * time.Second})
	b := newEdge(t, s, Settings{LockTTL: 2 * time.Second})
	ctx := ctxT(t)
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Lock(wctx, "l"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second edge Lock while held past 2.5 TTLs: %v; want deadline exceeded", err)
	}
	if ok, err := b.TryLock(ctx, "l"); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v", ok, err)
	}
	if err := a.RenewLockLease(ctx, "l", time.Minute); err != nil {
		t.Errorf("RenewLockLease: %v", err)
	}
	if err := a.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "l"); !ok || err != nil {
		t.Fatalf("TryLock after release = %v, %v", ok, err)
	}
	if err := b.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
}

// A holder that dies (its connection closes without Unlock) loses the lock
// one TTL later; a waiter then gets it.
func TestLockExpiresWhenHolderDies(t *testing.T) {
	s := startJetStream(t)
	const ttl = 2 * time.Second
	a := newEdge(t, s, Settings{LockTTL: ttl})
	b := newEdge(t, s, Settings{LockTTL: ttl})
	ctx := ctxT(t)
	if err := a.Lock(ctx, "issue_cert_shop.acme.localhost"); err != nil {
		t.Fatal(err)
	}
	a.nc.Close() // the edge dies
	died := time.Now()
	if ok, _ := b.TryLock(ctx, "issue_cert_shop.acme.localhost"); ok {
		t.Fatal("lock of a just-dead holder taken at once")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*ttl)
	defer cancel()
	if err := b.Lock(wctx, "issue_cert_shop.acme.localhost"); err != nil {
		t.Fatalf("lock of a dead holder not free after %v: %v", time.Since(died), err)
	}
	waited := time.Since(died)
	t.Logf("acquired %v after the holder died (ttl %v)", waited, ttl)
	if waited < ttl/2 {
		t.Errorf("acquired after %v; the holder's last refresh was at most ttl/3 before it died, so want >= %v", waited, ttl/2)
	}
	if err := b.Unlock(ctx, "issue_cert_shop.acme.localhost"); err != nil {
		t.Error(err)
	}
	// the dead edge's keeper gave up (no goroutine refreshing forever)
	a.mu.Lock()
	h := a.held["issue_cert_shop.acme.localhost"]
	a.mu.Unlock()
	select {
	case <-h.done:
	case <-time.After(ttl):
		t.Fatal("keeper still running on a closed connection")
	}
	if err := a.Unlock(ctx, "issue_cert_shop.acme.localhost"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Unlock by the dead edge: %v; want ErrLockNotHeld", err)
	}
}

// A lock whose holder lost it (not refreshed for a TTL, taken by another)
// cannot be released by the old holder, and must not release the new one's.
func TestUnlockNotHeld(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{LockTTL: 2 * time.Second})
	b := newEdge(t, s, Settings{LockTTL: 2 * time.Second})
	ctx := ctxT(t)
	if err := a.Unlock(ctx, "never"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Unlock of a lock never taken: %v; want ErrLockNotHeld", err)
	}
	if err := b.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "x"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Unlock of another edge's lock: %v; want ErrLockNotHeld", err)
	}
	if ok, _ := a.TryLock(ctx, "x"); ok {
		t.Fatal("lock released by an edge that did not hold it")
	}
	if err := b.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "x"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("second Unlock: %v; want ErrLockNotHeld", err)
	}

	// a's lock expires (its keeper is stopped by hand) and b takes it
	if err := a.Lock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	h := a.held["y"]
	a.mu.Unlock()
	h.halt()
	if err := b.Lock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "y"); !errors.Is(err, ErrLockNotHeld) {
		t.Errorf("Unlock of an expired lock taken by another: %v; want ErrLockNotHeld", err)
	}
	if ok, _ := a.TryLock(ctx, "y"); ok {
		t.Fatal("old holder's Unlock released the new holder's lock")
	}
	if err := b.Unlock(ctx, "y"); err != nil {
		t.Error(err)
	}
}

// Lock honours its context while waiting.
func TestLockContext(t *testing.T) {
	s := startJetStream(t)
	a := newEdge(t, s, Settings{})
	b := newEdge(t, s, Settings{})
	ctx := ctxT(t)
	if err := a.Lock(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Lock(wctx, "z"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v; want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Lock returned %v after its context ended", d)
	}
	// a release wakes a waiter well before the poll interval would
	done := make(chan error, 1)
	go func() { done <- b.Lock(ctx, "z") }()
	if err := a.Unlock(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "z"); err != nil {
		t.Fatal(err)
	}
}
