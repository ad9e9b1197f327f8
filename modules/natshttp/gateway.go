package natshttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/route"
	"github.com/projectneo/caddy-neo/modules/natsconn"
)

func init() {
	caddy.RegisterModule(GatewayApp{})
}

// GatewayApp is the `neo_nats_gateway` app: stage gateways that answer HTTP
// requests carried over NATS by serving them through a named server of the
// http app, so their routes are ordinary Caddy routes.
type GatewayApp struct {
	// Gateways to run. Default: none.
	Gateways []*Gateway `json:"gateways,omitempty"`

	logger *zap.Logger
}

// Gateway subscribes, in a queue group, to the subjects of one stage and zone
// (optionally one tenant) and serves every request through an http server.
//
// Before serving, it overwrites the request headers Neo-Nats-Subject and,
// when the subject follows the default scheme, Neo-Stage, Neo-Zone,
// Neo-Tenant and Neo-App with the tokens of the subject the request arrived
// on: NATS permissions make the subject authoritative, whatever headers the
// sender put in.
type Gateway struct {
	// Name identifies the gateway in logs and metrics. Default: "<stage>-<zone>".
	Name string `json:"name,omitempty"`
	// Connection names the nats app connection. Default: "default".
	Connection string `json:"connection,omitempty"`
	// Server names the http app server whose routes serve the requests. Required.
	Server string `json:"server,omitempty"`
	// Stage served. Required unless Subjects is set.
	Stage string `json:"stage,omitempty"`
	// Zone served. Required unless Subjects is set.
	Zone string `json:"zone,omitempty"`
	// Tenant restricts the gateway to one tenant. Default: every tenant.
	Tenant string `json:"tenant,omitempty"`
	// Subjects overrides the subjects subscribed to. Default:
	// neo.rt.<stage>.<zone>.> (or neo.rt.<stage>.<zone>.<tenant>.>).
	Subjects []string `json:"subjects,omitempty"`
	// QueueGroup shared by the replicas of this gateway. Default: "neo-gateway".
	QueueGroup string `json:"queue_group,omitempty"`
	// ServiceName is the NATS micro service name. Default: "neo_stage_gateway".
	ServiceName string `json:"service_name,omitempty"`
	// FlowControl: chunk_timeout, chunk_size and window, shared with the
	// edge's transport (see FlowControl).
	FlowControl
	// MaxInFlight bounds concurrent requests; beyond it requests are answered
	// 503. Default: 10000.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// DrainTimeout bounds how long Stop waits for accepted requests; those
	// still running then are left to finish. Default: 30s.
	DrainTimeout caddy.Duration `json:"drain_timeout,omitempty"`

	nc       *nats.Conn
	srv      *caddyhttp.Server
	svc      micro.Service
	mux      *mux
	logger   *zap.Logger
	inflight atomic.Int64
	lastMsg  atomic.Int64
	served   atomic.Int64 // responses completed
	failed   atomic.Int64 // requests rejected or not completed
	busyNs   atomic.Int64 // total time spent serving, in ns
	wg       sync.WaitGroup
	stopping atomic.Bool
	sockets  sync.Map // *gatewaySocket: the WebSockets it carries (goAway)
	nsockets atomic.Int64
	// the metrics every request updates, resolved once
	okCount       prometheus.Counter
	inFlightGauge prometheus.Gauge
	workers       workers
}

// workerIdle is how long a worker goroutine waits for the next request
// before it exits.
const workerIdle = 30 * time.Second

// workers runs requests on reused goroutines. A request's handler chain
// (routes, reverse proxy, response copy) needs a deep stack: a fresh
// goroutine per request grew its stack from the minimum every time
// (runtime.copystack was 7% of a gateway's CPU under load). A worker runs
// one request after another while there are requests, and exits when it has
// waited workerIdle for one or when the gateway stops.
type workers struct {
	work chan func()
	quit chan struct{}
}

func (p *workers) init() {
	p.work = make(chan func()) // unbuffered: a send succeeds only when a worker is idle
	p.quit = make(chan struct{})
}

// run hands f to an idle worker, or starts a new one.
func (p *workers) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

func (p *workers) loop(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		f = nil //nolint:wastedassign // an idle worker must not keep the last request's closure alive
		t.Reset(workerIdle)
		select {
		case f = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop makes idle workers exit; busy ones exit when their request is done.
func (p *workers) stop() { close(p.quit) }

// CaddyModule returns the Caddy module information.
func (GatewayApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "neo_nats_gateway",
		New: func() caddy.Module { return new(GatewayApp) },
	}
}

// Provision resolves connections and http servers.
func (a *GatewayApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, g := range a.Gateways {
		if g == nil {
			return fmt.Errorf("gateways[%d]: empty", i)
		}
		g.fillDefaults()
		if err := g.validate(); err != nil {
			return fmt.Errorf("gateways[%d]: %w", i, err)
		}
		if names[g.Name] {
			return fmt.Errorf("gateways[%d]: name %q used twice", i, g.Name)
		}
		names[g.Name] = true
		g.logger = a.logger.With(zap.String("gateway", g.Name))
		nc, err := natsconn.Conn(ctx, g.Connection)
		if err != nil {
			return fmt.Errorf("gateways[%d]: connection: %w", i, err)
		}
		g.nc = nc
		httpApp, err := ctx.App("http")
		if err != nil {
			return fmt.Errorf("gateways[%d]: loading http app: %w", i, err)
		}
		srv, ok := httpApp.(*caddyhttp.App).Servers[g.Server]
		if !ok {
			return fmt.Errorf("gateways[%d]: server: no http server named %q", i, g.Server)
		}
		g.srv = srv
	}
	return nil
}

func (g *Gateway) fillDefaults() {
	if g.Name == "" {
		g.Name = g.Stage + "-" + g.Zone
		if g.Tenant != "" {
			g.Name += "-" + g.Tenant
		}
	}
	if len(g.Subjects) == 0 {
		g.Subjects = []string{route.Pattern(g.Stage, g.Zone, g.Tenant)}
	}
	if g.QueueGroup == "" {
		g.QueueGroup = "neo-gateway"
	}
	if g.ServiceName == "" {
		g.ServiceName = "neo_stage_gateway"
	}
	g.FlowControl.fillDefaults()
	if g.MaxInFlight == 0 {
		g.MaxInFlight = 10000
	}
	if g.DrainTimeout == 0 {
		g.DrainTimeout = caddy.Duration(30 * time.Second)
	}
}

func (g *Gateway) validate() error {
	if g.Server == "" {
		return errors.New("server: required")
	}
	for field, v := range map[string]string{"stage": g.Stage, "zone": g.Zone, "tenant": g.Tenant} {
		if v == "" && (field == "tenant" || len(g.Subjects) > 0) {
			continue
		}
		if err := natsconn.ValidToken(v); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	if !natsconn.ValidName(g.Name) {
		return fmt.Errorf("name: %q: want letters, digits, '-' or '_'", g.Name)
	}
	if !natsconn.ValidName(g.ServiceName) {
		return fmt.Errorf("service_name: %q: want letters, digits, '-' or '_'", g.ServiceName)
	}
	for _, s := range g.Subjects {
		if !natsconn.ValidPattern(s) {
			return fmt.Errorf("subjects: %q is not a valid subject", s)
		}
	}
	if !natsconn.ValidSubject(g.QueueGroup) {
		return fmt.Errorf("queue_group: %q is not valid", g.QueueGroup)
	}
	if err := g.FlowControl.validate(); err != nil {
		return err
	}
	if g.MaxInFlight < 1 {
		return errors.New("max_in_flight: must be positive")
	}
	if g.DrainTimeout < 0 {
		return errors.New("drain_timeout: must not be negative")
	}
	return nil
}

// Start subscribes every gateway and registers it as a micro service.
func (a *GatewayApp) Start() error {
	for i, g := range a.Gateways {
		if err := g.start(); err != nil {
			for _, started := range a.Gateways[:i] {
				started.stop()
			}
			return fmt.Errorf("starting gateway %s: %w", g.Name, err)
		}
	}
	return nil
}

// Stop drains every gateway: it stops taking requests and waits for the
// accepted ones to finish (up to DrainTimeout).
func (a *GatewayApp) Stop() error {
	var wg sync.WaitGroup
	for _, g := range a.Gateways {
		wg.Add(1)
		go func() { defer wg.Done(); g.stop() }()
	}
	wg.Wait()
	return nil
}

func (g *Gateway) start() error {
	g.workers.init()
	g.okCount = gatewayRequests.WithLabelValues(g.Name, "ok")
	g.inFlightGauge = gatewayInFlight.WithLabelValues(g.Name)
	var err error
	g.mux, err = newMux(g.nc, false, g.logger)
	if err != nil {
		return err
	}
	md := map[string]string{"gateway": g.Name, "stage": g.Stage, "zone": g.Zone}
	if g.Tenant != "" {
		md["tenant"] = g.Tenant
	}
	g.svc, err = micro.AddService(g.nc, micro.Config{
		Name:        g.ServiceName,
		Version:     "1.0.0",
		Description: "caddy-neo stage gateway: HTTP over NATS to stage " + g.Stage + " zone " + g.Zone,
		Metadata:    md,
		QueueGroup:  g.QueueGroup,
		// micro times the dispatch only (requests are served concurrently):
		// the full picture goes into each endpoint's data
		StatsHandler: func(*micro.Endpoint) any { return g.stats() },
	})
	if err != nil {
		g.mux.close()
		return err
	}
	for i, subj := range g.Subjects {
		name := "http"
		if len(g.Subjects) > 1 {
			name += strconv.Itoa(i)
		}
		if err := g.svc.AddEndpoint(name, micro.HandlerFunc(g.handle),
			micro.WithEndpointSubject(subj), micro.WithEndpointQueueGroup(g.QueueGroup),
			micro.WithEndpointMetadata(map[string]string{"protocol": "neo-http-over-nats/" + protoVersion + ",2,3"}),
			micro.WithEndpointPendingLimits(1<<16, 1<<30)); err != nil {
			_ = g.svc.Stop()
			g.mux.close()
			return err
		}
	}
	g.logger.Info("stage gateway started", zap.Strings("subjects", g.Subjects), zap.String("queue_group", g.QueueGroup), zap.String("server", g.Server))
	return nil
}

func (g *Gateway) stop() {
	if g.svc == nil || !g.stopping.CompareAndSwap(false, true) {
		return
	}
	start := time.Now()
	if caddy.Exiting() {
		// the process ends: its WebSockets cannot outlive it
		g.goAway(true)
	} else {
		// a reload: the sockets the gateway carries itself (transport
		// neo_http) go on for drain_timeout; those a reverse proxy holds,
		// for its stream_close_delay
		time.AfterFunc(time.Duration(g.DrainTimeout), func() { g.goAway(false) })
	}
	_ = g.svc.Stop() // unsubscribes, then delivers what was already received
	_ = g.nc.FlushTimeout(2 * time.Second)
	deadline := start.Add(time.Duration(g.DrainTimeout))
	// wait until the drained subscription has handed over every message it
	// held (no message for 100ms) and every accepted request has finished;
	// WebSockets are not waited for: they go on (a reload does not end
	// them; the stage server's stream_close_delay bounds them)
	requests := func() int64 { return g.inflight.Load() - g.nsockets.Load() }
	for time.Now().Before(deadline) {
		idle := time.Since(time.Unix(0, g.lastMsg.Load())) > 100*time.Millisecond
		if idle && requests() <= 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	if requests() <= 0 {
		close(done)
	} else {
		go func() { g.wg.Wait(); close(done) }()
	}
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		// they go on until they end, as an old http server's requests do
		g.logger.Warn("drain timeout: requests still running, left to finish", zap.Int64("in_flight", g.inflight.Load()))
	}
	g.workers.stop()
	g.mux.close()
	g.logger.Info("stage gateway drained", zap.Duration("took", time.Since(start)))
}

// GatewayStats is the data of a gateway's micro STATS endpoint entries.
type GatewayStats struct {
	InFlight          int64  `json:"in_flight"`
	Served            int64  `json:"served"`
	Failed            int64  `json:"failed"`
	AverageServeTime  string `json:"average_serve_time"`
	ServeTimeTotalSec string `json:"serve_time_total_seconds"`
}

func (g *Gateway) stats() GatewayStats {
	st := GatewayStats{InFlight: g.inflight.Load(), Served: g.served.Load(), Failed: g.failed.Load()}
	busy := time.Duration(g.busyNs.Load())
	if n := st.Served + st.Failed; n > 0 {
		st.AverageServeTime = (busy / time.Duration(n)).String()
	}
	st.ServeTimeTotalSec = fmt.Sprintf("%.3f", busy.Seconds())
	return st
}

// handle is called by the micro endpoint for each request head, in order.
func (g *Gateway) handle(req micro.Request) {
	g.lastMsg.Store(time.Now().UnixNano())
	reply := req.Reply()
	m := &nats.Msg{Subject: req.Subject(), Reply: reply, Header: nats.Header(req.Headers()), Data: req.Data()}
	if reply == "" || !natsconn.ValidSubject(reply) {
		gatewayRequests.WithLabelValues(g.Name, "no_reply").Inc()
		return
	}
	if g.inflight.Add(1) > int64(g.MaxInFlight) {
		g.inflight.Add(-1)
		gatewayRequests.WithLabelValues(g.Name, "overloaded").Inc()
		g.failed.Add(1)
		g.respondError(reply, http.StatusServiceUnavailable, "gateway overloaded")
		return
	}
	g.wg.Add(1)
	g.inFlightGauge.Inc()
	g.workers.run(func() {
		start := time.Now()
		defer func() {
			g.busyNs.Add(int64(time.Since(start)))
			g.inFlightGauge.Dec()
			g.inflight.Add(-1)
			g.wg.Done()
		}()
		g.serve(m)
	})
}

// respondError answers a request that cannot be served with a complete
// response, to reply, from a fresh inbox of the gateway (the reply subject
// an edge binds the request to; no frame follows).
func (g *Gateway) respondError(reply string, status int, msg string) {
	from, _ := g.mux.newInbox()
	_ = g.nc.PublishMsg(errorResp(reply, from, status, msg))
}

// errorResp is a complete version 1 response with a text body.
func errorResp(to, from string, status int, msg string) *nats.Msg {
	h := newFrame(kindResp, 4)
	h[hdrStatus] = statusValue(status)
	h[hdrEOF] = constValue("1")
	h[prefixHeader+"Content-Type"] = []string{"text/plain; charset=utf-8"}
	return &nats.Msg{Subject: to, Reply: from, Header: h, Data: []byte(msg + "\n")}
}

// logFields are a request's fields in log lines, built only when a line is
// written.
type logFields struct{ subject, tenant, app string }

func (l logFields) with(extra ...zap.Field) []zap.Field {
	f := make([]zap.Field, 0, 3+len(extra))
	f = append(f, zap.String("subject", l.subject))
	if l.tenant != "" || l.app != "" {
		f = append(f, zap.String("tenant", l.tenant), zap.String("app", l.app))
	}
	return append(f, extra...)
}

func (g *Gateway) serve(m *nats.Msg) {
	sr, rt := route.ParseSubject(m.Subject)
	fields := logFields{subject: m.Subject, tenant: sr.Tenant, app: sr.App}
	f, err := parseFrame(m)
	var rh *reqHead
	if err == nil {
		rh, err = parseReqHead(f)
	}
	if err != nil {
		gatewayRequests.WithLabelValues(g.Name, "bad_frame").Inc()
		g.failed.Add(1)
		g.logger.Warn("rejecting malformed request", fields.with(zap.Error(err))...)
		g.respondError(m.Reply, http.StatusBadRequest, "malformed request frame")
		return
	}

	ctx, cancel := context.WithCancel(context.Background())
	// a WebSocket the gateway took over (respWriter.takeOver) keeps the
	// stream, its context and its reader until it ends (release)
	var handedOver bool
	defer func() {
		if !handedOver {
			cancel()
		}
	}()
	window := g.window(rh.upgrade)
	st, err := g.mux.open(streamOpts{window: window, peer: m.Reply, bind: rh.bind, compact: rh.compact, tenant: fields.tenant, app: fields.app, subject: m.Subject})
	if err != nil {
		gatewayRequests.WithLabelValues(g.Name, "unavailable").Inc()
		g.failed.Add(1)
		g.logger.Warn("cannot serve request", fields.with(zap.Error(err))...)
		g.respondError(m.Reply, http.StatusServiceUnavailable, "stage gateway unavailable")
		return
	}
	st.cancelFn = cancel
	defer func() {
		if !handedOver {
			st.close()
		}
	}()
	st.addCredit(rh.window)

	reqCtx := ctx
	if rt {
		// neo_route (when the gateway's routes use it) serves the request
		// only if it resolves to the subject's tenant, stage and app.
		reqCtx = route.WithSubject(ctx, sr)
	}
	u := &url.URL{Path: "/", RawQuery: rh.query}
	if p, err := url.PathUnescape(rh.path); err == nil {
		u.Path = p
		if u.EscapedPath() != rh.path {
			u.RawPath = rh.path
		}
	}
	r := (&http.Request{
		Method: rh.method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rh.header, Host: rh.host, RequestURI: rh.path,
		ContentLength: rh.length, RemoteAddr: "127.0.0.1:0",
	}).WithContext(reqCtx)
	clientIdentity(r, rh)
	if rh.query != "" {
		r.RequestURI += "?" + rh.query
	}
	r.Header.Set("Neo-Nats-Subject", m.Subject)
	if rt {
		// the subject's tokens, as trusted headers
		r.Header.Set("Neo-Stage", sr.Stage)
		r.Header.Set("Neo-Zone", sr.Zone)
		r.Header.Set("Neo-Tenant", sr.Tenant)
		r.Header.Set("Neo-App", sr.App)
	}
	if len(rh.trailerNames) > 0 {
		r.Trailer = make(http.Header)
		for _, n := range rh.trailerNames {
			r.Trailer[n] = nil
		}
	}
	br := &bodyReader{
		st: st, ctx: ctx, timeout: g.chunkTimeout(), window: window,
		buf: f.data, next: 1, eof: f.eof, trailer: r.Trailer, request: true,
	}
	defer func() {
		if !handedOver {
			br.stop()
		}
	}()
	if f.eof && len(f.data) == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = newGatewayBody(br)
	}
	if rh.upgrade != "" {
		// a WebSocket handshake: the stream's bytes from the edge are the
		// client's side of the socket after a 101 (respWriter.Hijack); an
		// idle socket has no chunk timeout (the edge's cancel ends it)
		r.Header.Set("Upgrade", rh.upgrade)
		r.Header.Set("Connection", "Upgrade")
		r.Body, r.ContentLength = http.NoBody, 0
		br.timeout = 0
	}
	w := &respWriter{
		g: g, st: st, inbox: st.inbox, header: make(http.Header),
		chunk: g.chunk(g.nc), head: r.Method == http.MethodHead, v2: f.v2,
		snd: &sender{st: st, ctx: ctx, timeout: g.chunkTimeout()},
	}
	if rh.upgrade != "" {
		w.upgrade, w.br = rh.upgrade, br
		w.release = func() { br.stop(); st.close(); cancel() }
		// transport neo_http finds the handshake's writer here
		r = r.WithContext(context.WithValue(r.Context(), gatewaySlotKey{}, w))
	}
	if !f.eof {
		// tell the edge where to stream the body, and how much it may send
		if err := w.announce(window); err != nil {
			g.logger.Warn("answering request", fields.with(zap.Error(err))...)
			return
		}
	} else {
		// tell the edge where to send a cancel if the head takes a while
		t := time.AfterFunc(acceptDelay, func() { _ = w.announce(0) })
		defer t.Stop()
	}
	if rh.headTimeout > 0 {
		// the edge gives up this long after the request is sent: so do we
		var headTimer atomic.Pointer[time.Timer]
		start := func() {
			headTimer.Store(time.AfterFunc(rh.headTimeout+headGrace, func() {
				if !w.headWasSent() {
					cancel()
				}
			}))
		}
		if f.eof || rh.upgrade != "" {
			start()
		} else {
			br.onEOF = start
		}
		defer func() {
			if t := headTimer.Load(); t != nil {
				t.Stop()
			}
		}()
	}
	if !g.serveHTTP(w, r, fields) {
		return
	}
	if w.taken {
		handedOver = true
	}
	if w.hijacked.Load() {
		gatewayRequests.WithLabelValues(g.Name, "upgraded").Inc()
		g.okCount.Inc()
		g.served.Add(1)
		return
	}
	if err := w.finish(); err != nil {
		outcome := "stream_error"
		if st.canceled.Load() || errors.Is(err, context.Canceled) {
			outcome = "canceled"
		}
		gatewayRequests.WithLabelValues(g.Name, outcome).Inc()
		g.failed.Add(1)
		g.logger.Info("response not completed", fields.with(zap.String("outcome", outcome), zap.Error(err))...)
		return
	}
	g.okCount.Inc()
	g.served.Add(1)
}

// clientIdentity makes r carry the client the edge saw, as far as the head
// says (edges of earlier releases do not): RemoteAddr is the client's
// address with port 0, r.TLS is set (handshake complete, ServerName the
// host) when the client used https, and the X-Forwarded-For, -Proto and
// -Host fields the edge sent are removed. So the stage server's client_ip
// is the client, and its reverse_proxy sends the replica X-Forwarded-For:
// the client, X-Forwarded-Proto: the scheme, X-Forwarded-Host: the host,
// whatever the stage server's trusted_proxies. Otherwise RemoteAddr stays
// 127.0.0.1:0 and r.TLS nil.
func clientIdentity(r *http.Request, rh *reqHead) {
	if rh.client.IsValid() {
		r.RemoteAddr = netip.AddrPortFrom(rh.client, 0).String()
		delete(r.Header, "X-Forwarded-For")
		delete(r.Header, "X-Forwarded-Proto")
		delete(r.Header, "X-Forwarded-Host")
	}
	if rh.scheme == "https" {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: hostOnly(rh.host)}
	}
}

// hostOnly is host without a port or IPv6 brackets.
func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// serveHTTP runs the http server's handlers. A handler that panics must not
// leave the edge waiting for its head timeout: the edge gets a 502 when no
// head was sent yet, else an error frame that aborts the response stream.
func (g *Gateway) serveHTTP(w *respWriter, r *http.Request, fields logFields) (ok bool) {
	defer func() {
		rec := recover()
		if rec == nil {
			return
		}
		ok = false
		g.failed.Add(1)
		if rec == http.ErrAbortHandler {
			// the handler's way to abort a response it cannot complete (the
			// reverse proxy when its upstream fails mid-body); it logged why
			gatewayRequests.WithLabelValues(g.Name, "aborted").Inc()
			g.logger.Info("response aborted by the handler", fields.with()...)
		} else {
			gatewayRequests.WithLabelValues(g.Name, "panic").Inc()
			g.logger.Error("panic serving request", fields.with(zap.Any("panic", rec), zap.Stack("stack"))...)
		}
		w.mu.Lock()
		headSent := w.headSent
		w.headSent = true // nothing more from this writer
		w.mu.Unlock()
		w.done, w.err = true, errors.New("handler panic")
		if headSent {
			w.st.sendControl(kindError, 0, "handler panic")
		} else {
			_ = w.st.publish(errorResp("", "", http.StatusBadGateway, "stage gateway: internal error"))
		}
	}()
	g.srv.ServeHTTP(w, r)
	return true
}

// gatewayBody hides the bodyReader's other methods from handlers. Close
// ends a Read that waits for the edge's next frame: an HTTP/2 transport
// whose upstream ended the response before the request (a gRPC status
// while the client still streams) closes the request body and waits for
// its writer to stop before the response body's Close returns.
type gatewayBody struct {
	br     *bodyReader
	once   sync.Once
	closed chan struct{}
}

func newGatewayBody(br *bodyReader) *gatewayBody {
	b := &gatewayBody{br: br, closed: make(chan struct{})}
	br.closed = b.closed
	return b
}

func (b *gatewayBody) Read(p []byte) (int, error) { return b.br.Read(p) }
func (b *gatewayBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// respWriter turns a handler's response into frames: the head with the first
// bytes, then data frames under flow control, then the end frame.
type respWriter struct {
	mu        sync.Mutex // guards inboxSent and headSent against announce
	g         *Gateway
	st        *stream
	snd       *sender
	inbox     string
	inboxSent bool
	header    http.Header
	status    int
	headSent  bool
	head      bool // HEAD request: no body
	v2        bool // answer in protocol version 2 (the request came in it)
	buf       []byte
	chunk     int
	err       error
	done      bool
	// upgrade: the request's WebSocket handshake ("" when none); br its
	// stream from the edge, which Hijack hands over after a 101
	upgrade  string
	br       *bodyReader
	hijacked atomic.Bool
	// taken: the gateway carries the socket itself (takeOver); release
	// then frees the request's stream when the socket ends
	taken   bool
	release func()
}

func (w *respWriter) Header() http.Header { return w.header }

func (w *respWriter) WriteHeader(code int) {
	if w.status != 0 || (code < 200 && !(code == http.StatusSwitchingProtocols && w.upgrade != "")) {
		return // informational responses are not forwarded
	}
	w.status = code
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.head || w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		// the buffer grows with the response, up to one chunk: small
		// responses cost small buffers
		space := w.chunk - len(w.buf)
		if len(p) < space {
			w.buf = append(w.buf, p...)
			return written + len(p), nil
		}
		w.buf = append(w.buf, p[:space]...)
		p = p[space:]
		written += space
		if err := w.send(false); err != nil {
			return written, err
		}
	}
	return written, nil
}

// Flush sends what is buffered now (server-sent events, chunked streams).
func (w *respWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *respWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if w.headSent && len(w.buf) == 0 {
		return nil
	}
	return w.send(false)
}

// acceptDelay is how long a gateway waits before telling the edge its inbox
// (so that the edge can cancel) when the response head is not ready.
const acceptDelay = 200 * time.Millisecond

// headGrace is added to the edge's response head timeout before the gateway
// cancels, so that the edge's own 504 wins.
const headGrace = 250 * time.Millisecond

// announce sends the edge this request's inbox (once) with credit for
// request body frames: the edge binds the request to the gateway then (the
// frame's reply subject; Neo-Nats-Inbox is for edges of earlier releases).
func (w *respWriter) announce(credit int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inboxSent {
		return nil
	}
	w.inboxSent = true
	h := newFrame(kindCredit, 3)
	h[hdrInbox] = []string{w.inbox}
	if credit > 0 {
		h[hdrCredit] = []string{strconv.Itoa(credit)}
	}
	return w.st.publish(&nats.Msg{Header: h})
}

func (w *respWriter) headWasSent() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.headSent
}

// send publishes the buffer as the head (first time) or a data frame.
func (w *respWriter) send(eof bool) error {
	if w.err != nil {
		return w.err
	}
	if err := w.snd.ctx.Err(); err != nil {
		w.err = err // the edge is gone or gave up: send nothing more
		return err
	}
	var trailer http.Header
	if eof {
		trailer = w.trailers()
	}
	if !w.headWasSent() {
		return w.sendHead(eof, trailer)
	}
	w.err = w.snd.sendData(w.buf, eof, trailer)
	w.buf = w.buf[:0]
	return w.err
}

// sendHead sends the resp frame (once) with the buffered bytes, and with the
// end and the trailers when eof, in one message when it fits; else the head
// alone and the bytes after it in a data frame.
func (w *respWriter) sendHead(eof bool, trailer http.Header) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	data := w.buf
	w.buf = w.buf[:0]
	w.headSent = true
	inbox := ""
	if !w.inboxSent {
		inbox, w.inboxSent = w.inbox, true
	}
	m := w.headMsg(inbox, eof, trailer, data)
	if mp := int(w.g.nc.MaxPayload()); mp > 0 && headSize(m.Header)+len(m.Data) > mp {
		// headers are large: send the head alone, the bytes after it
		if err := w.st.publish(w.headMsg(inbox, false, nil, nil)); err != nil {
			w.err = err
			return err
		}
		w.st.sent.Store(0)
		w.err = w.snd.sendData(data, eof, trailer)
		return w.err
	}
	w.err = w.st.publish(m)
	if w.err == nil {
		w.st.sent.Store(0)
	}
	return w.err
}

// headMsg builds the resp frame, in the protocol version of the request:
// the status, the header fields, the announced trailer names, the inbox
// (unless empty), data, and with eof the end and the trailers.
func (w *respWriter) headMsg(inbox string, eof bool, trailer http.Header, data []byte) *nats.Msg {
	var names string
	if n := w.trailerNames(); len(n) > 0 {
		names = strings.Join(n, ",")
	}
	if w.v2 {
		b := make([]byte, 0, 64+len(inbox)+len(names)+v2FieldsSize(w.header)+v2FieldsSize(trailer)+len(data))
		b = appendV2Start(b, v2KindResp)
		b = appendV2Ctl(b, 's', statusValue(w.status)[0])
		if names != "" {
			b = appendV2Ctl(b, 'r', names)
		}
		if inbox != "" {
			b = appendV2Ctl(b, 'i', inbox)
		}
		if w.status == http.StatusSwitchingProtocols {
			b = appendV2Ctl(b, 'g', w.upgrade)
		}
		b = appendV2Fields(b, v2TagHTTP, w.header)
		if eof {
			b = appendV2Ctl(b, 'e', "1")
			b = appendV2Fields(b, v2TagTrail, trailer)
		}
		return &nats.Msg{Data: append(append(b, v2End), data...)}
	}
	h := newFrame(kindResp, 5+len(w.header)+len(trailer))
	h[hdrStatus] = statusValue(w.status)
	putHTTPFields(h, w.header, prefixHeader) // "Trailer:<name>" fields are not tokens: dropped
	if names != "" {
		h[hdrTrailer] = []string{names}
	}
	if inbox != "" {
		h[hdrInbox] = []string{inbox}
	}
	if w.status == http.StatusSwitchingProtocols {
		h[hdrUpgrade] = []string{w.upgrade}
	}
	if eof {
		h[hdrEOF] = constValue("1")
		putHTTPFields(h, trailer, prefixTrailer)
	}
	return &nats.Msg{Header: h, Data: data}
}

func (w *respWriter) trailerNames() []string {
	var names []string
	for _, v := range w.header.Values("Trailer") {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); validHTTPToken(n) {
				names = append(names, http.CanonicalHeaderKey(n))
			}
		}
	}
	return names
}

func (w *respWriter) trailers() http.Header {
	tr := make(http.Header)
	for _, n := range w.trailerNames() {
		if vv := w.header[n]; len(vv) > 0 {
			tr[n] = vv
		}
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			tr[http.CanonicalHeaderKey(k[len(http.TrailerPrefix):])] = vv
		}
	}
	return tr
}

// finish ends the response stream.
func (w *respWriter) finish() error {
	if w.done {
		return w.err
	}
	w.done = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		if w.headSent && !w.st.canceled.Load() {
			w.st.sendControl(kindError, 0, w.err.Error())
		}
		return w.err
	}
	return w.send(true)
}

// Hijack hands the handler (the reverse proxy after its replica's 101) the
// socket: the 101 goes to the edge now, then the socket's bytes are data
// frames both ways on the request's stream. Only a WebSocket handshake's
// 101 can be hijacked.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.taken {
		// the gateway carries the socket (takeOver): the reverse proxy's
		// tunnel gets a connection at its end
		return endedConn{}, bufio.NewReadWriter(bufio.NewReaderSize(endedConn{}, 16), bufio.NewWriterSize(endedConn{}, 16)), nil
	}
	if w.upgrade == "" || w.status != http.StatusSwitchingProtocols || w.hijacked.Load() {
		return nil, nil, http.ErrNotSupported
	}
	c, err := w.socket(true)
	if err != nil {
		return nil, nil, err
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(c, 1), bufio.NewWriterSize(c, 1)), nil
}

// socket sends the 101 to the edge and registers the socket; held: a
// handler (the reverse proxy) holds the request while it lasts.
func (w *respWriter) socket(held bool) (*gatewaySocket, error) {
	if !w.headWasSent() {
		if err := w.sendHead(false, nil); err != nil {
			return nil, err
		}
	}
	w.hijacked.Store(true)
	w.done = true
	c := &gatewaySocket{w: w, held: held}
	w.g.sockets.Store(c, struct{}{})
	w.g.nsockets.Add(1)
	if ct := w.g.chunkTimeout(); ct > 0 {
		c.watchPeer(ct)
	}
	return c, nil
}

// gatewaySocket is the edge's side of a hijacked WebSocket on a gateway.
type gatewaySocket struct {
	w      *respWriter
	wmu    sync.Mutex
	closed atomic.Bool
	watch  atomic.Pointer[time.Timer] // watchPeer
	// held: the reverse proxy holds the request (Hijack); else the gateway
	// carries it (takeOver) and backend is the replica's connection. Either
	// way the socket counts as a request in flight (max_in_flight, the
	// in-flight gauge) for its life, and in nsockets.
	held    bool
	backend io.Closer
	endOnce sync.Once
}

func (c *gatewaySocket) Read(p []byte) (int, error) { return c.w.br.Read(p) }

func (c *gatewaySocket) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), c.w.chunk)
		if err := c.w.snd.sendData(p[:n], false, nil); err != nil {
			return written, err
		}
		p, written = p[n:], written+n
	}
	return written, nil
}

// Close ends the socket: the edge gets the end of the stream (a cancel, so
// that it stops sending too).
func (c *gatewaySocket) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.w.g.sockets.Delete(c)
	c.w.g.nsockets.Add(-1)
	if t := c.watch.Load(); t != nil {
		t.Stop()
	}
	c.w.st.sendControl(kindCancel, 0, "websocket closed")
	c.w.st.abort()
	return nil
}

// goAway ends the WebSockets the gateway carries (all, or only those no
// reverse proxy holds): the edge gets an error frame saying the gateway
// goes away (its client a close frame with code 1001), and the replica's
// side of the socket ends.
func (g *Gateway) goAway(all bool) {
	g.sockets.Range(func(k, _ any) bool {
		c := k.(*gatewaySocket)
		if (all || !c.held) && !c.closed.Swap(true) {
			g.sockets.Delete(c)
			g.nsockets.Add(-1)
			if t := c.watch.Load(); t != nil {
				t.Stop()
			}
			c.w.st.sendControl(kindError, 0, goingAwayMsg)
			c.w.st.abort()
		}
		return true
	})
}

func (c *gatewaySocket) LocalAddr() net.Addr              { return socketAddr{} }
func (c *gatewaySocket) RemoteAddr() net.Addr             { return socketAddr{} }
func (c *gatewaySocket) SetDeadline(time.Time) error      { return nil }
func (c *gatewaySocket) SetReadDeadline(time.Time) error  { return nil }
func (c *gatewaySocket) SetWriteDeadline(time.Time) error { return nil }

type socketAddr struct{}

func (socketAddr) Network() string { return "nats" }
func (socketAddr) String() string  { return "nats" }

// Interface guards
var (
	_ http.Hijacker     = (*respWriter)(nil)
	_ caddy.App         = (*GatewayApp)(nil)
	_ caddy.Provisioner = (*GatewayApp)(nil)
	_ http.Flusher      = (*respWriter)(nil)
)
