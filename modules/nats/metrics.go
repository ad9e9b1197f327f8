package neonats

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	proxyRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_nats_transport_requests_total",
		Help: "Requests sent over NATS by the reverse-proxy transport, by outcome.",
	}, []string{"outcome"})
	proxyFailovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "caddy_neo_nats_transport_zone_failovers_total",
		Help: "Requests sent to a further zone because no gateway listened in the previous one.",
	})
	gatewayRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_nats_gateway_requests_total",
		Help: "Requests served by stage gateways, by gateway and outcome.",
	}, []string{"gateway", "outcome"})
	gatewayInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "caddy_neo_nats_gateway_in_flight",
		Help: "Requests being served by stage gateways.",
	}, []string{"gateway"})
)

// proxyOK is the transport's outcome of almost every request, resolved once.
var proxyOK = proxyRequests.WithLabelValues("ok")

func registerMetrics(reg *prometheus.Registry) {
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{connUp, connReconnects, proxyRequests, proxyFailovers, gatewayRequests, gatewayInFlight} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				continue
			}
		}
	}
}
