package natsconn

import (
	"sync"

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

// upOwners are the live pooled connections of each name, oldest first.
// The connection up gauge of a name reports the newest: a reload that
// changes a connection's settings dials the new one before it destructs
// the old, and a reload that fails destructs the new one and keeps the
// old.
var upOwners = struct {
	sync.Mutex
	m map[string][]*pooledConn
}{m: make(map[string][]*pooledConn)}

// ownGauge makes p the connection its name's gauge reports, down until it
// connects.
func (p *pooledConn) ownGauge() {
	upOwners.Lock()
	defer upOwners.Unlock()
	upOwners.m[p.name] = append(upOwners.m[p.name], p)
	connUp.WithLabelValues(p.name).Set(0)
}

// setUp sets the gauge of p's name when p is the connection it reports.
func (p *pooledConn) setUp(up bool) {
	upOwners.Lock()
	defer upOwners.Unlock()
	if l := upOwners.m[p.name]; len(l) > 0 && l[len(l)-1] == p {
		connUp.WithLabelValues(p.name).Set(gaugeValue(up))
	}
}

// releaseGauge hands the gauge of p's name to the newest other live
// connection of that name, or removes it when there is none.
func (p *pooledConn) releaseGauge() {
	upOwners.Lock()
	defer upOwners.Unlock()
	l := upOwners.m[p.name]
	for i, q := range l {
		if q == p {
			l = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(upOwners.m, p.name)
		connUp.DeleteLabelValues(p.name)
		return
	}
	upOwners.m[p.name] = l
	owner := l[len(l)-1]
	connUp.WithLabelValues(p.name).Set(gaugeValue(owner.nc != nil && owner.nc.IsConnected()))
}

func gaugeValue(up bool) float64 {
	if up {
		return 1
	}
	return 0
}
