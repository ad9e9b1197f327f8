package natsstorage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ErrLockNotHeld is returned by Unlock (and RenewLockLease) for a lock this
// storage does not hold: never acquired, already released, or lost because it
// expired (this process could not refresh it for a whole TTL) and was taken
// by another holder.
var ErrLockNotHeld = errors.New("lock not held")

// Locks are entries of the lock bucket, whose TTL (max age) is the lock TTL:
// an entry is acquired with a compare-and-set create (it succeeds only if the
// key has no live value), refreshed by a keeper goroutine every third of the
// TTL with a compare-and-set update (a new message, so its age restarts), and
// released with a compare-and-set delete. A holder that dies stops refreshing
// and the server drops its entry one TTL after the last refresh; waiters then
// acquire it.

type lockValue struct {
	Owner    string    `json:"owner"`
	Name     string    `json:"name"`
	Acquired time.Time `json:"acquired"`
}

type heldLock struct {
	name string
	enc  string
	val  []byte

	mu   sync.Mutex
	rev  uint64
	lost bool

	stop chan struct{}
	done chan struct{}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Lock blocks until it holds the lock name or ctx is done.
func (s *KV) Lock(ctx context.Context, name string) error {
	start := time.Now()
	err := s.lock(ctx, name)
	s.count("lock", err)
	if err == nil {
		s.observeWait(start)
	}
	return err
}

func (s *KV) lock(ctx context.Context, name string) error {
	enc, err := encodeKey(name)
	if err != nil {
		return fmt.Errorf("lock name: %w", err)
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	var updates <-chan jetstream.KeyValueEntry
	watched := false
	for {
		ok, err := s.tryLock(ctx, b, name, enc)
		if err != nil || ok {
			return err
		}
		if !watched {
			watched = true
			// wake up on release; expiry makes no event, hence the poll
			w, err := b.locks.Watch(ctx, enc, jetstream.UpdatesOnly(), jetstream.MetaOnly())
			if err == nil {
				defer w.Stop()
				updates = w.Updates()
				continue // released between the attempt and the watch?
			}
			s.log.Debug("watching lock", zap.String("lock", name), zap.Error(err))
		}
		poll := time.NewTimer(s.pollInterval())
		select {
		case <-ctx.Done():
			poll.Stop()
			return fmt.Errorf("waiting for lock %q: %w", name, ctx.Err())
		case _, open := <-updates:
			if !open {
				updates = nil // the watch ended: poll only
			}
		case <-poll.C:
		}
		poll.Stop()
	}
}

func (s *KV) pollInterval() time.Duration {
	s.mu.Lock()
	ttl := s.lockTTL
	s.mu.Unlock()
	return min(max(ttl/10, 100*time.Millisecond), time.Second)
}

// TryLock takes the lock name if it is free, without waiting.
func (s *KV) TryLock(ctx context.Context, name string) (bool, error) {
	ok, err := s.tryLockName(ctx, name)
	switch {
	case err != nil:
		s.count("trylock", err)
	case !ok:
		s.count("trylock", errBusy)
	default:
		s.count("trylock", nil)
	}
	return ok, err
}

func (s *KV) tryLockName(ctx context.Context, name string) (bool, error) {
	enc, err := encodeKey(name)
	if err != nil {
		return false, fmt.Errorf("lock name: %w", err)
	}
	b, err := s.buckets(ctx)
	if err != nil {
		return false, err
	}
	return s.tryLock(ctx, b, name, enc)
}

func (s *KV) tryLock(ctx context.Context, b *buckets, name, enc string) (bool, error) {
	val, _ := json.Marshal(lockValue{Owner: s.owner, Name: name, Acquired: time.Now().UTC()})
	rev, err := b.locks.Create(ctx, enc, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acquiring lock %q: %w", name, err)
	}
	h := &heldLock{name: name, enc: enc, val: val, rev: rev, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	old := s.held[name]
	s.held[name] = h
	ttl := s.lockTTL
	s.mu.Unlock()
	locksHeld.WithLabelValues(s.set.Bucket).Inc()
	if old != nil {
		// an earlier hold of ours that expired without Unlock
		old.halt()
		s.released(old)
	}
	go s.keep(b, h, ttl) //nolint:gosec // G118: the refresh outlives the call by design; halt stops it
	return true, nil
}

func (h *heldLock) halt() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// released counts a stopped hold out of the held gauge, unless losing it
// already did.
func (s *KV) released(h *heldLock) {
	h.mu.Lock()
	lost := h.lost
	h.mu.Unlock()
	if !lost {
		locksHeld.WithLabelValues(s.set.Bucket).Dec()
	}
}

// keep refreshes a held lock until it is released or lost. A lock that could
// not be refreshed for a whole TTL has expired on the server: it is lost.
func (s *KV) keep(b *buckets, h *heldLock, ttl time.Duration) {
	defer close(h.done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	lastOK := time.Now()
	lose := func(why string, err error) {
		s.log.Error("lock lost: "+why, zap.String("lock", h.name), zap.Error(err))
		locksLost.WithLabelValues(s.set.Bucket).Inc()
		locksHeld.WithLabelValues(s.set.Bucket).Dec()
		h.mu.Lock()
		h.lost = true
		h.mu.Unlock()
	}
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.Lock()
		rev := h.rev
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		next, err := b.locks.Update(ctx, h.enc, h.val, rev)
		cancel()
		switch {
		case err == nil:
			lastOK = time.Now()
			h.mu.Lock()
			h.rev = next
			h.mu.Unlock()
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyExists):
			lose("it expired before it could be refreshed", err)
			return
		case errors.Is(err, nats.ErrConnectionClosed):
			lose("the nats connection is closed", err)
			return
		case time.Since(lastOK) >= ttl:
			lose("not refreshed for a whole ttl", err)
			return
		default:
			s.log.Warn("refreshing lock", zap.String("lock", h.name), zap.Error(err))
		}
	}
}

// Unlock releases a lock taken by Lock or TryLock on this storage.
func (s *KV) Unlock(ctx context.Context, name string) error {
	err := s.unlock(ctx, name)
	s.count("unlock", err)
	return err
}

func (s *KV) unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	b := s.b
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("unlocking %q: %w", name, ErrLockNotHeld)
	}
	h.halt()
	s.released(h)
	h.mu.Lock()
	rev, lost := h.rev, h.lost
	h.mu.Unlock()
	if lost {
		return fmt.Errorf("unlocking %q: %w (it expired)", name, ErrLockNotHeld)
	}
	err := b.locks.Delete(ctx, h.enc, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("unlocking %q: %w (it expired and was taken)", name, ErrLockNotHeld)
	}
	if err != nil {
		return fmt.Errorf("unlocking %q: %w", name, err)
	}
	return nil
}

// RenewLockLease refreshes a held lock now. The lease always lasts the lock
// bucket's TTL from the refresh; leaseDuration is not used.
func (s *KV) RenewLockLease(ctx context.Context, name string, _ time.Duration) error {
	s.mu.Lock()
	h := s.held[name]
	b := s.b
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("renewing %q: %w", name, ErrLockNotHeld)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return fmt.Errorf("renewing %q: %w (it expired)", name, ErrLockNotHeld)
	}
	next, err := b.locks.Update(ctx, h.enc, h.val, h.rev)
	if err != nil {
		return fmt.Errorf("renewing %q: %w", name, err)
	}
	h.rev = next
	return nil
}
