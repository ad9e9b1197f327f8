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
//	caddy_neo_requests_total{tenant,stage,app,code_class}         Runtime requests by
//	                                                 status class (neo_access, at the edge)
//	caddy_neo_platform_requests_total{tenant,service,code_class}  Platform requests
//	caddy_neo_request_duration_seconds{tenant,code_class}         latency histogram
//	(the tenant label is left out with metrics_no_tenant_label)
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
		Help: "Runtime requests at the edge, by tenant, stage, app (\"\" if not routed to one) and status class.",
	}, []string{"tenant", "stage", "app", "code_class"})
	mRequestsNoTenant = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "requests_total",
		Help: "Runtime requests at the edge, by stage, app (\"\" if not routed to one) and status class.",
	}, []string{"stage", "app", "code_class"})
	mPlatform = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "platform_requests_total",
		Help: "Platform requests at the edge, by tenant, service and status class.",
	}, []string{"tenant", "service", "code_class"})
	mPlatformNoTenant = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "platform_requests_total",
		Help: "Platform requests at the edge, by service and status class.",
	}, []string{"service", "code_class"})
	mDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "request_duration_seconds",
		Help:    "Time from the request's arrival at the edge to the end of its response, by tenant and status class.",
		Buckets: durationBuckets,
	}, []string{"tenant", "code_class"})
	mDurationNoTenant = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "neo", Name: "request_duration_seconds",
		Help:    "Time from the request's arrival at the edge to the end of its response, by status class.",
		Buckets: durationBuckets,
	}, []string{"code_class"})
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

// durationBuckets reach the platform's longest timeouts (60 s for an
// exposed REST API, 100 s for a service action).
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// codeClasses are the code_class label values, by status / 100.
var codeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func classOf(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

type metrics struct {
	noTenant bool
}

func newMetrics(ctx caddy.Context, noTenant bool) (*metrics, error) {
	requests, platform, duration := mRequests, mPlatform, mDuration
	if noTenant {
		requests, platform, duration = mRequestsNoTenant, mPlatformNoTenant, mDurationNoTenant
	}
	err := neometrics.Register(ctx.GetMetricsRegistry(), requests, platform, duration, mUnrouted, mTenants, mDomains, mAdminChanges, mAdminLatency, mStoreChanges, mWatchRestarts)
	if err != nil {
		return nil, err
	}
	return &metrics{noTenant: noTenant}, nil
}

// observe counts a request at the edge, after its response: its tenant,
// stage and app (or service; both "" when it reached neither), status and
// duration. st, when not nil, is the cache of the app's pool (one tenant,
// app and stage): the label lookups (hashing every label value, a map
// lookup in each vector) then happen once per pool and status class
// instead of once per request.
func (m *metrics) observe(st *poolStats, tenant, stage, app, service string, status int, d time.Duration) {
	if m == nil {
		return
	}
	c := classOf(status)
	var cnt prometheus.Counter
	var obs prometheus.Observer
	if st != nil {
		cnt = st.req[c].load(m.requestVec())
		obs = st.dur[c].load(m.durationVec())
	}
	if cnt == nil {
		cls := codeClasses[c]
		switch {
		case service != "" && m.noTenant:
			cnt = mPlatformNoTenant.WithLabelValues(service, cls)
		case service != "":
			cnt = mPlatform.WithLabelValues(tenant, service, cls)
		case m.noTenant:
			cnt = mRequestsNoTenant.WithLabelValues(stage, app, cls)
		default:
			cnt = mRequests.WithLabelValues(tenant, stage, app, cls)
		}
		if st != nil {
			st.req[c].store(m.requestVec(), cnt)
		}
	}
	if obs == nil {
		if m.noTenant {
			obs = mDurationNoTenant.WithLabelValues(codeClasses[c])
		} else {
			obs = mDuration.WithLabelValues(tenant, codeClasses[c])
		}
		if st != nil {
			st.dur[c].store(m.durationVec(), obs)
		}
	}
	cnt.Inc()
	obs.Observe(d.Seconds())
}

func (m *metrics) requestVec() *prometheus.CounterVec {
	if m.noTenant {
		return mRequestsNoTenant
	}
	return mRequests
}

func (m *metrics) durationVec() *prometheus.HistogramVec {
	if m.noTenant {
		return mDurationNoTenant
	}
	return mDuration
}

// poolStats caches the metric series of one pool (a tenant's app in one
// stage, or a platform service). A pool is compiled into one registry of one
// neo app, so its labels never change; the vector is checked all the same.
type poolStats struct {
	// req[c], dur[c]: the app's requests and latency with status class c.
	req [6]lazyCounter
	dur [6]lazyObserver
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

type observerRef struct {
	vec *prometheus.HistogramVec
	o   prometheus.Observer
}

// lazyObserver is one histogram series, looked up on first use.
type lazyObserver struct{ p atomic.Pointer[observerRef] }

func (l *lazyObserver) load(vec *prometheus.HistogramVec) prometheus.Observer {
	if r := l.p.Load(); r != nil && r.vec == vec {
		return r.o
	}
	return nil
}

func (l *lazyObserver) store(vec *prometheus.HistogramVec, o prometheus.Observer) {
	l.p.Store(&observerRef{vec: vec, o: o})
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
