package egress

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/time/rate"
)

// zoneStates holds per-tenant counters and token buckets per zone, so that
// connections opened before a config reload still count against the
// tenant's limit after it.
var zoneStates = caddy.NewUsagePool()

type zoneState struct {
	mu      sync.Mutex
	tenants map[string]*tenantState
}

func (z *zoneState) Destruct() error { return nil }

type tenantState struct {
	conns   atomic.Int64
	limiter *rate.Limiter // nil: unlimited
	mu      sync.Mutex
}

// tenant returns the state of name, with its limiter set to bytesPerSecond
// (0: unlimited).
func (z *zoneState) tenant(name string, bytesPerSecond int64) *tenantState {
	z.mu.Lock()
	defer z.mu.Unlock()
	t, ok := z.tenants[name]
	if !ok {
		t = &tenantState{}
		z.tenants[name] = t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case bytesPerSecond <= 0:
		t.limiter = nil
	case t.limiter == nil:
		t.limiter = rate.NewLimiter(rate.Limit(bytesPerSecond), burstFor(bytesPerSecond))
	default:
		t.limiter.SetLimit(rate.Limit(bytesPerSecond))
		t.limiter.SetBurst(burstFor(bytesPerSecond))
	}
	return t
}

func (t *tenantState) getLimiter() *rate.Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limiter
}

// burstFor is one second of traffic, at least 1 KiB and at most copyBufSize.
func burstFor(bps int64) int {
	b := bps
	if b < 1024 {
		b = 1024
	}
	if b > copyBufSize {
		b = copyBufSize
	}
	return int(b)
}

// tryAcquire takes a connection slot if fewer than max are in use (max 0:
// unlimited).
func (t *tenantState) tryAcquire(max int) bool {
	n := t.conns.Add(1)
	if max > 0 && n > int64(max) {
		t.conns.Add(-1)
		return false
	}
	return true
}

func (t *tenantState) release() { t.conns.Add(-1) }

const copyBufSize = 32 * 1024

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// meteredCopy copies src to dst, counting bytes into n, taking each chunk's
// bytes from lim (if any) before writing it, calling activity after every
// chunk, and flushing after every write if flush is set.
func meteredCopy(ctx context.Context, dst io.Writer, src io.Reader, lim *rate.Limiter, n *atomic.Int64, activity func(), flush func()) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if lim != nil && lim.Burst() < len(buf) {
		buf = buf[:lim.Burst()]
	}
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if err := waitN(ctx, lim, nr); err != nil {
				return err
			}
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if activity != nil {
				activity()
			}
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if flush != nil {
				flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// idleWatch calls onIdle once nothing was copied for d; touch resets it.
type idleWatch struct {
	t *time.Timer
	d time.Duration
}

func newIdleWatch(d time.Duration, onIdle func()) *idleWatch {
	if d <= 0 {
		return &idleWatch{}
	}
	return &idleWatch{t: time.AfterFunc(d, onIdle), d: d}
}

func (w *idleWatch) touch() {
	if w.t != nil {
		w.t.Reset(w.d)
	}
}

func (w *idleWatch) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// waitN takes n tokens from lim (nil: unlimited) in chunks of at most its
// burst, which a reload may have lowered since the buffer was sized.
func waitN(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	for n > 0 {
		c := min(n, lim.Burst())
		if c <= 0 {
			return context.Canceled
		}
		if err := lim.WaitN(ctx, c); err != nil {
			return err
		}
		n -= c
	}
	return nil
}
