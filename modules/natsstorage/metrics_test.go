package natsstorage

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	s := startJetStream(t)
	bucket := "metrics_" + randomID() // counters are package-level: a fresh label set per run
	set := Settings{Bucket: bucket, LockTTL: 2 * time.Second}
	a, b := newEdge(t, s, set), newEdge(t, s, set)
	ctx := ctxT(t)
	ops := func(op, result string) float64 {
		return testutil.ToFloat64(opsTotal.WithLabelValues(bucket, op, result))
	}
	if err := a.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, _ = a.Load(ctx, "k")
	_, _ = a.Load(ctx, "missing")
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.TryLock(ctx, "l"); ok {
		t.Fatal("TryLock of a held lock")
	}
	if got := testutil.ToFloat64(locksHeld.WithLabelValues(bucket)); got != 1 {
		t.Errorf("locks held = %v; want 1", got)
	}
	a.nc.Close() // a dies holding it: b waits for the expiry, a's keeper loses it
	if err := b.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	h := a.held["l"]
	a.mu.Unlock()
	<-h.done
	_ = a.Unlock(ctx, "l") // certmagic unlocks after its work, lost or not
	for _, c := range []struct {
		op, result string
		want       float64
	}{
		{"store", "ok", 1}, {"load", "ok", 1}, {"load", "not_found", 1},
		{"lock", "ok", 2}, {"trylock", "busy", 1}, {"unlock", "ok", 1}, {"unlock", "error", 1},
	} {
		if got := ops(c.op, c.result); got != c.want {
			t.Errorf("operations{op=%s,result=%s} = %v; want %v", c.op, c.result, got, c.want)
		}
	}
	if got := testutil.ToFloat64(locksHeld.WithLabelValues(bucket)); got != 0 {
		t.Errorf("locks held after release and loss = %v; want 0", got)
	}
	if got := testutil.ToFloat64(locksLost.WithLabelValues(bucket)); got != 1 {
		t.Errorf("locks lost = %v; want 1", got)
	}
	if n := testutil.CollectAndCount(lockWait); n == 0 {
		t.Error("no lock wait observed")
	}
	// a dead holder's wait shows in the histogram's upper buckets
	reg := prometheus.NewPedanticRegistry()
	registerMetrics(reg)
	registerMetrics(reg) // a second configuration: no error, no panic
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "caddy_neo_storage_lock_wait_seconds" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == bucket && m.GetHistogram().GetSampleSum() < 1 {
					t.Errorf("lock wait sum %v s; want the dead holder's TTL wait", m.GetHistogram().GetSampleSum())
				}
			}
		}
	}
}
