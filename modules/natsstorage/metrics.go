package natsstorage

import (
	"errors"
	"io/fs"
	"time"

	"github.com/projectneo/caddy-neo/internal/neometrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are package-level: a storage outlives the configuration that made
// it while certmagic still uses it, so the collectors do too, and each
// configuration's registry registers them. Labels are bounded: the bucket
// (one or two per deployment), the operation and its result.
var (
	opsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_storage_operations_total",
		Help: "NATS storage operations by bucket, operation (store, load, delete, list, stat, lock, trylock, unlock) and result (ok, not_found, busy, error).",
	}, []string{"bucket", "op", "result"})
	lockWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "caddy_neo_storage_lock_wait_seconds",
		Help:    "Time Lock waited for a NATS storage lock (held by another process or expiring).",
		Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300},
	}, []string{"bucket"})
	locksHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_neo_storage_locks_held",
		Help: "NATS storage locks this process holds.",
	}, []string{"bucket"})
	locksLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_storage_locks_lost_total",
		Help: "Locks that expired while held because they could not be refreshed.",
	}, []string{"bucket"})
)

func registerMetrics(reg prometheus.Registerer) error {
	return neometrics.Register(reg, opsTotal, lockWait, locksHeld, locksLost)
}

// count records one operation's result.
func (s *KV) count(op string, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		result = "not_found"
	case errors.Is(err, errBusy):
		result = "busy"
	default:
		result = "error"
	}
	opsTotal.WithLabelValues(s.set.Bucket, op, result).Inc()
}

// errBusy only labels a TryLock that found the lock taken.
var errBusy = errors.New("busy")

func (s *KV) observeWait(start time.Time) {
	lockWait.WithLabelValues(s.set.Bucket).Observe(time.Since(start).Seconds())
}
