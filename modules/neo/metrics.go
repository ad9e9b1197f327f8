package neo

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/projectneo/caddy-neo/internal/neometrics"
	"github.com/projectneo/caddy-neo/modules/zonelb"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics (on Caddy's metrics registry, served by the `metrics` handler and
// the admin endpoint's /metrics):
//
//	caddy_neo_requests_total{tenant,stage,app}       routed Runtime requests
//	caddy_neo_requests_total{stage,app}              the same with metrics_no_tenant_label
//	caddy_neo_platform_requests_total{service}       routed Platform requests
//	caddy_neo_unrouted_requests_total{reason}        generic 404s and 400s by reason
//	caddy_neo_registry_tenants / _domains            registry size
//	caddy_neo_admin_changes_total{method,code}       admin API changes
//	caddy_neo_admin_change_duration_seconds{method}  their latency (validate, store, publish)
//	caddy_neo_store_changes_total{result}            changes seen by a shared store's watch:
//	                                                 applied, deleted, unchanged, skipped
//	caddy_neo_store_watch_restarts_total             watches of a shared store restarted after an error
var (
	mRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "requests_total",
		Help: "Requests routed to an app, by tenant, stage and app.",
	}, []string{"tenant", "stage", "app"})
	mRequestsNoTenant = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "requests_total",
		Help: "Requests routed to an app, by stage and app.",
	}, []string{"stage", "app"})
	mPlatform = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "platform_requests_total",
		Help: "Requests routed to a platform service.",
	}, []string{"service"})
	mUnrouted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "unrouted_requests_total",
		Help: "Requests answered with the generic 404 or 400, by reason.",
	}, []string{"reason"})
	mTenants = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "registry_tenants",
		Help: "Tenants in the registry.",
	})
	mDomains = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "registry_domains",
		Help: "Custom domains in the registry.",
	})
	mAdminChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "admin_changes_total",
		Help: "Registry changes through the admin API, by method and status code.",
	}, []string{"method", "code"})
	mAdminLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "admin_change_duration_seconds",
		Help:    "Latency of registry changes through the admin API.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"method"})
	mStoreChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "store_changes_total",
		Help: "Tenant changes seen by the watch of a shared store, by result (applied, deleted, unchanged, skipped).",
	}, []string{"result"})
	mWatchRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "store_watch_restarts_total",
		Help: "Watches of a shared tenant store restarted after an error.",
	})
)

type metrics struct {
	noTenant bool
}

func newMetrics(ctx caddy.Context, noTenant bool) (*metrics, error) {
	requests := mRequests
	if noTenant {
		requests = mRequestsNoTenant
	}
	err := neometrics.Register(ctx.GetMetricsRegistry(), requests, mPlatform, mUnrouted, mTenants, mDomains, mAdminChanges, mAdminLatency, mStoreChanges, mWatchRestarts)
	if err != nil {
		return nil, err
	}
	return &metrics{noTenant: noTenant}, nil
}

// request counts a routed request. st, when not nil, is the pool's cache of
// its counters: the label lookup (hashing every label value, a map lookup in
// the vector) then happens once per pool instead of once per request.
func (m *metrics) request(st *poolStats, tenant, stage, app, service string) {
	if m == nil {
		return
	}
	vec := mRequests
	switch {
	case service != "":
		vec = mPlatform
	case m.noTenant:
		vec = mRequestsNoTenant
	}
	var c prometheus.Counter
	if st != nil {
		c = st.req.load(vec)
	}
	if c == nil {
		switch {
		case service != "":
			c = vec.WithLabelValues(service)
		case m.noTenant:
			c = vec.WithLabelValues(stage, app)
		default:
			c = vec.WithLabelValues(tenant, stage, app)
		}
		if st != nil {
			st.req.store(vec, c)
		}
	}
	c.Inc()
}

// poolStats caches the metric series of one pool (a tenant's app in one
// stage, or a platform service). A pool is compiled into one registry of one
// neo app, so its labels never change; the vector is checked all the same.
type poolStats struct {
	req lazyCounter
	// sel[(zone+1)*outcomes+outcome]: upstream selections by the chosen
	// replica's zone (index in the pool; -1 for none) and outcome.
	sel []lazyCounter
	// zoneNames[i] is the pool's zone i, boxed once for the replacer.
	zoneNames []any
}

// selOutcomes is the number of zonelb.Outcome values.
const selOutcomes = 5

func newPoolStats(p *zonelb.Pool) *poolStats {
	st := &poolStats{sel: make([]lazyCounter, (p.Zones()+1)*selOutcomes), zoneNames: make([]any, p.Zones())}
	for i := range st.zoneNames {
		st.zoneNames[i] = p.ZoneName(i)
	}
	return st
}

type counterRef struct {
	vec *prometheus.CounterVec
	c   prometheus.Counter
}

// lazyCounter is one metric series, looked up on first use.
type lazyCounter struct{ p atomic.Pointer[counterRef] }

func (l *lazyCounter) load(vec *prometheus.CounterVec) prometheus.Counter {
	if r := l.p.Load(); r != nil && r.vec == vec {
		return r.c
	}
	return nil
}

func (l *lazyCounter) store(vec *prometheus.CounterVec, c prometheus.Counter) {
	l.p.Store(&counterRef{vec: vec, c: c})
}

func (m *metrics) miss(reason string) {
	if m == nil {
		return
	}
	mUnrouted.WithLabelValues(reason).Inc()
}

func (m *metrics) size(s *Snapshot) {
	if m == nil {
		return
	}
	mTenants.Set(float64(s.Len()))
	mDomains.Set(float64(s.Domains()))
}

func (m *metrics) adminChange(method string, status int, err error, d time.Duration) {
	if m == nil {
		return
	}
	if status == 0 {
		status = http.StatusOK
	}
	mAdminChanges.WithLabelValues(method, strconv.Itoa(status)).Inc()
	if err == nil {
		mAdminLatency.WithLabelValues(method).Observe(d.Seconds())
	}
}

func (m *metrics) storeChange(result string) {
	if m == nil {
		return
	}
	mStoreChanges.WithLabelValues(result).Inc()
}
