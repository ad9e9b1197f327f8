package natsconn

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/projectneo/caddy-neo/internal/neometrics"
)

// Metrics are package-level: NATS connections outlive configurations, so the
// collectors do too, and each configuration's registry registers them.
var (
	connUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_neo_nats_connection_up",
		Help: "1 while the named NATS connection is connected, 0 otherwise.",
	}, []string{"connection"})
	connReconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_nats_reconnects_total",
		Help: "Reconnections of the named NATS connection.",
	}, []string{"connection"})
)

func registerMetrics(reg prometheus.Registerer) error {
	return neometrics.Register(reg, connUp, connReconnects)
}
