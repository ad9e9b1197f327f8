package egress

import (
	"sync"

	"github.com/projectneo/caddy-neo/internal/neometrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Verdicts, the label values of caddy_neo_egress_connections_total and the
// "verdict" field of the log line.
const (
	verdictAllowed      = "allowed"         // connected (the exchange may still fail later)
	verdictPolicy       = "denied_policy"   // destination not in the caller's allowlist
	verdictInternal     = "denied_internal" // destination resolves to an internal address
	verdictUnknown      = "denied_caller"   // caller not identified (407) or mismatched (403)
	verdictLimited      = "limited"         // tenant at its connection limit (429)
	verdictBadRequest   = "bad_request"     // malformed destination or request
	verdictUnresolvable = "unresolvable"    // no such host (502)
	verdictUpstream     = "upstream_error"  // could not connect, or the exchange failed (502/504)
)

// Package-level collectors survive reloads; each config's registry gets them
// registered once (AlreadyRegistered is expected when several handlers
// provision).
var metrics = struct {
	once     sync.Once
	conns    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	active   *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}{}

func initMetrics() {
	metrics.once.Do(func() {
		metrics.conns = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caddy_neo_egress_connections_total",
			Help: "Egress gateway connections (CONNECT tunnels and http:// requests) by zone, tenant, kind and verdict.",
		}, []string{"zone", "tenant", "kind", "verdict"})
		metrics.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caddy_neo_egress_bytes_total",
			Help: "Bytes relayed by the egress gateway by zone, tenant and direction (up: caller to destination, down: back).",
		}, []string{"zone", "tenant", "direction"})
		metrics.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "caddy_neo_egress_active_connections",
			Help: "Egress connections in progress by zone and tenant.",
		}, []string{"zone", "tenant"})
		metrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caddy_neo_egress_connection_duration_seconds",
			Help:    "Duration of allowed egress connections by zone, tenant and kind.",
			Buckets: []float64{.005, .01, .05, .1, .5, 1, 5, 30, 120, 600},
		}, []string{"zone", "tenant", "kind"})
	})
}

func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	return neometrics.Register(reg, metrics.conns, metrics.bytes, metrics.active, metrics.duration)
}
