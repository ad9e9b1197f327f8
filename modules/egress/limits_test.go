package egress

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestTenantSlots(t *testing.T) {
	z := &zoneState{tenants: map[string]*tenantState{}}
	a, b := z.tenant("acme", 0), z.tenant("globex", 0)
	if !a.tryAcquire(2) || !a.tryAcquire(2) {
		t.Fatal("acme's first two slots refused")
	}
	if a.tryAcquire(2) {
		t.Fatal("acme's third slot granted with max 2")
	}
	if !b.tryAcquire(2) {
		t.Fatal("globex refused because of acme")
	}
	a.release()
	if !a.tryAcquire(2) {
		t.Fatal("released slot not reusable")
	}
	if z.tenant("acme", 0) != a {
		t.Fatal("tenant state not shared")
	}
	if !z.tenant("free", 0).tryAcquire(0) {
		t.Fatal("max 0 must be unlimited")
	}
}

// TestWaitNAboveBurst: a burst lowered by a reload while a copy runs (its
// buffer sized for the old burst) must not break the copy.
func TestWaitNAboveBurst(t *testing.T) {
	lim := rate.NewLimiter(rate.Limit(1e9), 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lim.WaitN(ctx, 32<<10); err == nil {
		t.Fatal("precondition: rate.Limiter.WaitN above the burst should fail")
	}
	if err := waitN(ctx, lim, 32<<10); err != nil {
		t.Fatalf("waitN above the burst: %v", err)
	}
	var n atomic.Int64
	var dst bytes.Buffer
	if err := meteredCopy(ctx, &dst, strings.NewReader(strings.Repeat("x", 100<<10)), lim, &n, nil, nil); err != nil || n.Load() != 100<<10 || dst.Len() != 100<<10 {
		t.Fatalf("metered copy: %d bytes, %v", n.Load(), err)
	}
	if err := waitN(ctx, nil, 1<<30); err != nil {
		t.Fatal(err)
	}
}
