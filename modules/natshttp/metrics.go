package natshttp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/projectneo/caddy-neo/internal/neometrics"
)

// Metrics are package-level: streams and gateways outlive configurations, so
// the collectors do too, and each configuration's registry registers them
// (the transport and the gateway app, each in its Provision).
var (
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
	rejectedFrames = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_neo_nats_rejected_frames_total",
		Help: "Frames dropped because they did not come from the request's peer, by side (edge: transports; gateway: stage gateways) and reason (wrong_reply, not_accepted, unexpected_kind, unknown_stream).",
	}, []string{"side", "reason"})
)

// The sides of rejectedFrames.
const (
	sideEdge    = "edge"
	sideGateway = "gateway"
)

// rejectedCounters are rejectedFrames' counters, resolved once.
var rejectedCounters = func() map[[2]string]prometheus.Counter {
	m := map[[2]string]prometheus.Counter{}
	for _, side := range []string{sideEdge, sideGateway} {
		for _, r := range []string{reasonWrongReply, reasonNotAccepted, reasonUnexpectedKind, reasonUnknownStream} {
			m[[2]string{side, r}] = rejectedFrames.WithLabelValues(side, r)
		}
	}
	return m
}()

func rejectedCounter(side, reason string) prometheus.Counter {
	return rejectedCounters[[2]string{side, reason}]
}

// proxyOK is the transport's outcome of almost every request, resolved once.
var proxyOK = proxyRequests.WithLabelValues("ok")

func registerMetrics(reg prometheus.Registerer) error {
	return neometrics.Register(reg, proxyRequests, proxyFailovers, gatewayRequests, gatewayInFlight, rejectedFrames)
}
