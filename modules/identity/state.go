package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kv is the identity service's state: signing keys (one bucket) and
// sign-in sessions with their refresh-token chains (another). Shared across
// edges through JetStream KV (natsKV), or held in this process (memKV, a
// single edge). Writes are compare-and-swap on the key's revision, which is
// what makes refresh-token rotation and reuse detection hold across edges.
type kv interface {
	// Get returns the value and its revision; errNoKey when absent.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Create writes a new key; errExists when it is there.
	Create(ctx context.Context, key string, val []byte) (uint64, error)
	// Update writes key if its revision is still rev; errRevision otherwise.
	Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error)
	// Delete removes a key (absent is not an error).
	Delete(ctx context.Context, key string) error
}

// keyLister lists a store's keys (the signing keys' re-seal sweep).
type keyLister interface {
	Keys(ctx context.Context) ([]string, error)
}

var (
	errNoKey    = errors.New("no such key")
	errExists   = errors.New("key exists")
	errRevision = errors.New("revision changed")
	// errUnavailable wraps failures to reach the shared state: sign-in and
	// renewal answer 503.
	errUnavailable = errors.New("identity state unavailable")
)

// memKV is a kv in this process's memory. Entries older than maxAge since
// their last write are dropped.
type memKV struct {
	mu     sync.Mutex
	m      map[string]memEntry
	rev    uint64
	maxAge time.Duration
	writes int
}

type memEntry struct {
	val  []byte
	rev  uint64
	when time.Time
}

func newMemKV(maxAge time.Duration) *memKV { return &memKV{m: map[string]memEntry{}, maxAge: maxAge} }

func (s *memKV) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || s.maxAge > 0 && time.Since(e.when) > s.maxAge {
		return nil, 0, errNoKey
	}
	return e.val, e.rev, nil
}

func (s *memKV) put(key string, val []byte) uint64 {
	s.rev++
	s.m[key] = memEntry{val: append([]byte(nil), val...), rev: s.rev, when: time.Now()}
	s.writes++
	if s.maxAge > 0 && s.writes%1024 == 0 {
		for k, e := range s.m {
			if time.Since(e.when) > s.maxAge {
				delete(s.m, k)
			}
		}
	}
	return s.rev
}

func (s *memKV) Create(_ context.Context, key string, val []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && (s.maxAge == 0 || time.Since(e.when) <= s.maxAge) {
		return 0, errExists
	}
	return s.put(key, val), nil
}

func (s *memKV) Update(_ context.Context, key string, val []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; !ok || e.rev != rev {
		return 0, errRevision
	}
	return s.put(key, val), nil
}

func (s *memKV) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Keys lists the keys.
func (s *memKV) Keys(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for k := range s.m {
		out = append(out, k)
	}
	return out, nil
}

// natsKV is a kv on a JetStream key-value bucket.
type natsKV struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

// openBucket opens or creates a bucket. maxAge 0 keeps values forever.
func openBucket(ctx context.Context, nc *nats.Conn, name string, replicas int, maxAge time.Duration) (*natsKV, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		b, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: "caddy-neo identity state (neo_identity)",
			History: 1, Replicas: replicas, TTL: maxAge, Storage: jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			b, err = js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return &natsKV{nc: nc, kv: b}, nil
}

func (s *natsKV) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return errNoKey
	case errors.Is(err, jetstream.ErrKeyExists):
		return errExists
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return errRevision
	}
	return fmt.Errorf("%w: %w", errUnavailable, err)
}

func (s *natsKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	return e.Value(), e.Revision(), nil
}

func (s *natsKV) Create(ctx context.Context, key string, val []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, val)
	return rev, s.wrap(err)
}

func (s *natsKV) Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
	r, err := s.kv.Update(ctx, key, val, rev)
	return r, s.wrap(err)
}

func (s *natsKV) Delete(ctx context.Context, key string) error {
	err := s.kv.Delete(ctx, key)
	if err != nil && errors.Is(s.wrap(err), errNoKey) {
		return nil
	}
	return s.wrap(err)
}

// Keys lists the bucket's keys.
func (s *natsKV) Keys(ctx context.Context) ([]string, error) {
	l, err := s.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, s.wrap(err)
	}
	defer func() { _ = l.Stop() }() // all keys are read by then: an error stopping the lister changes nothing
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out, nil
}

// Watch reports every key's changes (not the initial values) until ctx ends.
func (s *natsKV) Watch(ctx context.Context, f func(key string, val []byte, rev uint64)) error {
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return s.wrap(err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch closed")
			}
			if e == nil {
				continue
			}
			var val []byte
			if e.Operation() == jetstream.KeyValuePut {
				val = e.Value()
			}
			f(e.Key(), val, e.Revision())
		}
	}
}
