package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/projectneo/caddy-neo/internal/neometrics"
)

// Metrics (on Caddy's metrics registry). Labels are bounded: zone names come
// from the configuration, the other labels from the fixed sets below.
//
//	caddy_neo_rate_limit_requests_total{zone,result}   result: allowed, limited
//	caddy_neo_rate_limit_keys{zone}                     keys held
//	caddy_neo_rate_limit_state_bytes{zone}              memory of the zone's state
//	caddy_neo_rate_limit_evictions_total{zone,kind}     kind: expired (nothing lost),
//	                                                    light (on probation), heavy (protected)
//	caddy_neo_rate_limit_sync_total{zone,result}        distributed: sent, received, error
//	caddy_neo_rate_limit_log_suppressed_total{zone}     limited keys not logged (log budget spent)
//	caddy_neo_rate_limit_stream_seq{stream}             distributed: the last stream sequence applied
var (
	mRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "requests_total",
		Help: "Requests a rate-limit zone counted, by zone and result (allowed, limited).",
	}, []string{"zone", "result"})
	mKeys = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "keys",
		Help: "Keys a rate-limit zone holds state for.",
	}, []string{"zone"})
	mBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "state_bytes",
		Help: "Memory of a rate-limit zone's state (at most the zone's memory).",
	}, []string{"zone"})
	mEvictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "evictions_total",
		Help: "Keys evicted from a full rate-limit zone, by kind: expired (no count lost), light (on probation), heavy (protected: the zone is too small).",
	}, []string{"zone", "kind"})
	mSync = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "sync_total",
		Help: "Distributed rate-limit counters sent to NATS, received from it, and failed sends, by zone.",
	}, []string{"zone", "result"})
	mStreamSeq = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "stream_seq",
		Help: "Distributed rate limits: the sequence of the last counter update applied from the stream (compare with the stream's last sequence to see how far behind this edge is).",
	}, []string{"stream"})
	mSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo_rate_limit", Name: "log_suppressed_total",
		Help: "Limited keys not logged because the zone's log budget was spent.",
	}, []string{"zone"})
)

func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	return neometrics.Register(reg, mRequests, mKeys, mBytes, mEvictions, mSync, mSuppressed, mStreamSeq)
}

// zoneMetrics are one zone's metric children, resolved once.
type zoneMetrics struct {
	allowed, limited                       prometheus.Counter
	keys, memory                           prometheus.Gauge
	evictExpired, evictLight, evictHeavy   prometheus.Counter
	sent, received, syncErrors, suppressed prometheus.Counter
}

func newZoneMetrics(zone string) *zoneMetrics {
	return &zoneMetrics{
		allowed:      mRequests.WithLabelValues(zone, "allowed"),
		limited:      mRequests.WithLabelValues(zone, "limited"),
		keys:         mKeys.WithLabelValues(zone),
		memory:       mBytes.WithLabelValues(zone),
		evictExpired: mEvictions.WithLabelValues(zone, "expired"),
		evictLight:   mEvictions.WithLabelValues(zone, "light"),
		evictHeavy:   mEvictions.WithLabelValues(zone, "heavy"),
		sent:         mSync.WithLabelValues(zone, "sent"),
		received:     mSync.WithLabelValues(zone, "received"),
		syncErrors:   mSync.WithLabelValues(zone, "error"),
		suppressed:   mSuppressed.WithLabelValues(zone),
	}
}
