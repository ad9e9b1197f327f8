package natshttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is the `http.reverse_proxy.transport.neo_nats` module: it carries each
// proxied request over NATS to a stage gateway instead of dialing the upstream
// (the upstream address of reverse_proxy is not used; write `to nats`).
//
// The subject is built from a template whose tokens may hold placeholders;
// each token is expanded on its own and must come out a valid token (see
// natsconn.ValidToken) or the request is answered 400 and logged. The zone token
// ({neo.zone}) takes each zone of the failover order in turn: the request's
// own {neo.zone} first when set, then Zones in order. A zone with no gateway
// listening (NATS "no responders") is skipped at once, only while nothing has
// been delivered; when no zone has a gateway the answer is 503.
//
// Bodies stream both ways in frames that fit the server's max_payload, with
// credit-based flow control, so memory stays bounded whatever the size.
type Transport struct {
	// Connection names the nats app connection to use. Default: "default".
	Connection string `json:"connection,omitempty"`
	// Subject template. Default: "neo.rt.{neo.stage}.{neo.zone}.{neo.tenant}.{neo.app}".
	Subject string `json:"subject,omitempty"`
	// Zones is the failover order of the zone token, after the request's
	// own {neo.zone}. Default: the tenant registry's failover order (the neo
	// app's zone_order, or the zones after this node's around its zones)
	// when the config has a neo app; otherwise none.
	Zones []string `json:"zones,omitempty"`
	// ResponseHeaderTimeout bounds the wait for the response head after the
	// last request progress. Default: 60s.
	ResponseHeaderTimeout caddy.Duration `json:"response_header_timeout,omitempty"`
	// FlowControl: chunk_timeout, chunk_size and window, shared with the
	// stage gateway (see FlowControl).
	FlowControl
	// GatewayCheckInterval is how often the edge checks, while it waits on a
	// gateway for a response head or body frame, that the gateway still
	// serves the request (a probe to the gateway's per-request inbox). A
	// request fails with 502 (or its body is cut when the head was already
	// sent) when no gateway has acknowledged it within 3 intervals plus
	// 200ms (gateways acknowledge after 200ms at the latest), when 2 probes
	// in a row meet no responders (the gateway's connection is gone), when
	// the gateway no longer knows the request, or when it reports frames
	// sent that never arrived (lost with a NATS server). Negative disables
	// the checks (requests then wait the timeouts). Default: 1s.
	GatewayCheckInterval caddy.Duration `json:"gateway_check_interval,omitempty"`
	// ProtocolVersion is the framing version the edge sends: 3 sends data
	// and credit frames without NATS headers as well (compact frames, see
	// proto2.go), 2 packs the request and response heads into the message
	// payload, 1 puts every field in a NATS header. Gateways accept every
	// version and answer in kind; set 2 while gateways of releases before
	// version 3 serve the subjects (they reject a version 3 head with 400),
	// 1 while gateways before version 2 do. Default: 3.
	ProtocolVersion int `json:"protocol_version,omitempty"`

	tmpl *SubjectTemplate
	nc   *nats.Conn
	mux  *mux
	// the head's fixed field values, built once
	windowValue, socketWindowValue, timeoutValue []string
	logger                                       *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.neo_nats",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision fills defaults and opens the reply subscription on the shared
// connection.
func (t *Transport) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if t.Subject == "" {
		t.Subject = DefaultSubject
	}
	if t.ResponseHeaderTimeout == 0 {
		t.ResponseHeaderTimeout = caddy.Duration(60 * time.Second)
	}
	t.FlowControl.fillDefaults()
	if t.GatewayCheckInterval == 0 {
		t.GatewayCheckInterval = caddy.Duration(time.Second)
	}
	if t.ProtocolVersion == 0 {
		t.ProtocolVersion = 3
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if len(t.Zones) == 0 && t.tmpl.HasZone() {
		t.Zones = registryZones(ctx)
	}
	t.windowValue = []string{strconv.Itoa(t.Window)}[:1:1]
	t.socketWindowValue = []string{strconv.Itoa(t.SocketWindow)}[:1:1]
	t.timeoutValue = []string{strconv.FormatInt(time.Duration(t.ResponseHeaderTimeout).Milliseconds(), 10)}[:1:1]
	nc, err := natsconn.Conn(ctx, t.Connection)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	t.nc = nc
	t.mux, err = newMux(nc, true, t.logger)
	if err != nil {
		return fmt.Errorf("subscribing to replies: %w", err)
	}
	return nil
}

// Validate checks the configuration.
func (t *Transport) Validate() error {
	st, err := ParseSubjectTemplate(t.Subject)
	if err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	t.tmpl = st
	for _, z := range t.Zones {
		if err := natsconn.ValidToken(z); err != nil {
			return fmt.Errorf("zones: %w", err)
		}
	}
	if len(t.Zones) > 0 && !st.HasZone() {
		return fmt.Errorf("zones: the subject %q has no %s token", t.Subject, ZonePlaceholder)
	}
	if t.ResponseHeaderTimeout < 0 {
		return errors.New("response_header_timeout: must not be negative")
	}
	if err := t.FlowControl.validate(); err != nil {
		return err
	}
	if t.GatewayCheckInterval > 0 && t.GatewayCheckInterval < caddy.Duration(10*time.Millisecond) {
		return fmt.Errorf("gateway_check_interval: want at least 10ms (or negative to disable), got %s", time.Duration(t.GatewayCheckInterval))
	}
	if t.ProtocolVersion < 0 || t.ProtocolVersion > 3 {
		return fmt.Errorf("protocol_version: want 1, 2 or 3, got %d", t.ProtocolVersion)
	}
	return nil
}

// Cleanup closes the reply subscription (the connection stays in the pool).
func (t *Transport) Cleanup() error {
	if t.mux != nil {
		t.mux.close()
	}
	return nil
}

// zoneOrder lists the zones to try: the request's own zone, then Zones.
func (t *Transport) zoneOrder(repl *caddy.Replacer) []string {
	if !t.tmpl.HasZone() {
		return []string{""}
	}
	var out []string
	if repl != nil {
		if z, _ := repl.GetString("neo.zone"); z != "" {
			out = append(out, z)
		}
	}
	for _, z := range t.Zones {
		if !contains(out, z) {
			out = append(out, z)
		}
	}
	return out
}

// RoundTrip sends the request over NATS and returns the gateway's response,
// in steps: resolve the subjects of the zones to try, build the head frame,
// open the request's stream, publish the head to each zone in turn until a
// gateway takes it, stream the request body, wait for the response head,
// and hand the response (its body streaming from the gateway) to the proxy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.newRoundTrip(req)
	if resp := rt.checkUpgrade(); resp != nil {
		return resp, nil
	}
	if resp := rt.resolveSubjects(); resp != nil {
		return resp, nil
	}
	if resp, err := rt.buildHead(); resp != nil || err != nil {
		return resp, err
	}
	if err := rt.openStream(); err != nil {
		return nil, err
	}
	defer rt.timer.Stop()
	pending, resp, err := rt.publishHead()
	if resp != nil || err != nil {
		return resp, err
	}
	uploadDone, progress := rt.streamRequestBody()
	if pending, err = rt.awaitResponseHead(pending, uploadDone, progress); err != nil {
		return nil, err
	}
	return rt.response(pending)
}

// roundTrip is the state RoundTrip's steps share for one request.
type roundTrip struct {
	t    *Transport
	req  *http.Request
	ctx  context.Context
	repl *caddy.Replacer
	// fields for log lines; built lazily into a logger only when one is written
	fields      []zap.Field
	log         lazyLogger
	tenant, app string
	// upgrade: "websocket" for a WebSocket handshake
	upgrade string
	// the zones to try, in order, and their subjects
	zones, subjects []string
	// the head frame; first is where an inline body goes in it
	msg   *nats.Msg
	first []byte
	// the body still to stream after the head (none when eof)
	body  io.ReadCloser
	eof   bool
	chunk int
	st    *stream
	probe *prober
	// the response head timeout, reset by request progress
	hdrTimeout time.Duration
	timer      *time.Timer
	// a gateway acknowledges by then, or the request was lost
	acceptBy time.Time
}

func (t *Transport) newRoundTrip(req *http.Request) *roundTrip {
	rt := &roundTrip{t: t, req: req, ctx: req.Context()}
	rt.repl, _ = rt.ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if rt.repl != nil {
		rt.tenant, _ = rt.repl.GetString("neo.tenant")
		rt.app, _ = rt.repl.GetString("neo.app")
	}
	rt.fields = []zap.Field{zap.String("tenant", rt.tenant), zap.String("app", rt.app)}
	rt.log = lazyLogger{base: t.logger, fields: &rt.fields}
	return rt
}

// checkUpgrade takes a WebSocket handshake, and answers 501 to any other
// protocol upgrade.
func (rt *roundTrip) checkUpgrade() *http.Response {
	req := rt.req
	if u := req.Header.Get("Upgrade"); u != "" {
		if !strings.EqualFold(u, "websocket") || req.Method != http.MethodGet {
			proxyRequests.WithLabelValues("upgrade_refused").Inc()
			rt.log.Warn("refusing protocol upgrade over nats", zap.String("upgrade", u))
			return synthetic(req, http.StatusNotImplemented, "only WebSocket upgrades are carried over NATS")
		}
		rt.upgrade = "websocket"
	}
	return nil
}

// resolveSubjects expands the subject template for each zone of the
// failover order; a request whose names do not make valid tokens is
// answered 400, one with no zone to try 502.
func (rt *roundTrip) resolveSubjects() *http.Response {
	t, req := rt.t, rt.req
	exp, err := t.tmpl.Expand(rt.repl)
	if err != nil {
		proxyRequests.WithLabelValues("bad_subject").Inc()
		rt.log.Warn("rejecting request: cannot build a nats subject", zap.String("subject", t.Subject), zap.Error(err))
		return synthetic(req, http.StatusBadRequest, "bad request: invalid routing name")
	}
	zones := t.zoneOrder(rt.repl)
	if len(zones) == 0 {
		proxyRequests.WithLabelValues("no_zone").Inc()
		rt.log.Error("no zone to send to: set {neo.zone} or zones", zap.String("subject", t.Subject))
		return synthetic(req, http.StatusBadGateway, "no zone configured")
	}
	subjects := make([]string, len(zones))
	for i, z := range zones {
		if subjects[i], err = exp.Subject(z); err != nil {
			proxyRequests.WithLabelValues("bad_subject").Inc()
			rt.log.Warn("rejecting request: bad zone token", zap.String("zone", z), zap.Error(err))
			return synthetic(req, http.StatusBadRequest, "bad request: invalid zone")
		}
	}
	rt.zones, rt.subjects = zones, subjects
	rt.fields = append(rt.fields, zap.String("subject", subjects[0]))
	return nil
}

// buildHead builds the head frame, with the body inline when it is known,
// small and fits; a head that cannot fit in a message is answered 431.
func (rt *roundTrip) buildHead() (*http.Response, error) {
	t, req, upgrade := rt.t, rt.req, rt.upgrade
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	var trailerNames string
	if len(req.Trailer) > 0 {
		names := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			if validHTTPToken(k) && !forbiddenTrailer(http.CanonicalHeaderKey(k)) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		trailerNames = strings.Join(names, ",")
	}
	chunk := t.chunk(t.nc)
	body := req.Body
	eof := body == nil || body == http.NoBody || req.ContentLength == 0
	length := req.ContentLength
	if body == nil || body == http.NoBody {
		length = 0
	}
	if upgrade != "" {
		// the stream carries the socket's bytes after the 101, not a body
		eof, length, body = false, -1, nil
	}
	// a body of known length that fits rides in the head
	inline := !eof && req.ContentLength > 0 && req.ContentLength <= int64(chunk) && len(req.Trailer) == 0 && upgrade == ""
	hf := headFields{host: host, trailerNames: trailerNames, client: clientAddr(req), scheme: clientScheme(req), upgrade: upgrade}
	msg, first := t.headMsg(req, hf, length, inline)
	headBytes := headSize(msg.Header) + len(msg.Data) - len(first)
	if mp := int(t.nc.MaxPayload()); mp > 0 {
		if headBytes+256 > mp {
			proxyRequests.WithLabelValues("head_too_large").Inc()
			rt.log.Warn("request head does not fit in a nats message", zap.Int("head_bytes", headBytes))
			return synthetic(req, http.StatusRequestHeaderFieldsTooLarge, "request header fields too large"), nil
		}
		if inline && req.ContentLength > int64(mp-headBytes-256) {
			inline = false
			msg, first = t.headMsg(req, hf, length, false)
		}
	}
	if inline {
		eof = true
		if _, err := io.ReadFull(body, first); err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
	}
	rt.msg, rt.first, rt.body, rt.eof, rt.chunk = msg, first, body, eof, chunk
	return nil, nil
}

// openStream opens the request's stream (its reply inbox) and starts the
// response head timer and the gateway probes.
func (rt *roundTrip) openStream() error {
	t := rt.t
	st, err := t.mux.open(streamOpts{window: t.window(rt.upgrade), compact: t.ProtocolVersion >= 3, tenant: rt.tenant, app: rt.app, subject: rt.subjects[0]})
	if err != nil {
		proxyRequests.WithLabelValues("publish_error").Inc()
		rt.log.Error("nats round trip failed", zap.String("outcome", "publish_error"), zap.Error(err))
		return fmt.Errorf("subscribing to the reply inbox: %w", err)
	}
	rt.st = st
	rt.msg.Reply = st.inbox
	rt.hdrTimeout = time.Duration(t.ResponseHeaderTimeout)
	rt.timer = time.NewTimer(rt.hdrTimeout)
	rt.probe = newProber(st, time.Duration(t.GatewayCheckInterval))
	// a gateway acknowledges by then, or the request was lost; the probe
	// timer wakes the wait for it (no probe is sent before the gateway's
	// inbox is known)
	if rt.probe != nil {
		rt.acceptBy = time.Now().Add(acceptProbes*rt.probe.interval + acceptDelay)
	}
	return nil
}

// fail ends the request's stream (the gateway gets a cancel), reports the
// outcome and returns err.
func (rt *roundTrip) fail(outcome string, err error) error {
	rt.probe.stop()
	rt.st.abort()
	rt.st.sendControl(kindCancel, 0, outcome)
	rt.st.close()
	proxyRequests.WithLabelValues(outcome).Inc()
	if !errors.Is(err, context.Canceled) {
		rt.log.Error("nats round trip failed", zap.String("outcome", outcome), zap.Error(err))
	}
	return err
}

// publishHead publishes the head to each zone in turn until a gateway
// takes the request: it announces itself, or its response head comes first
// (pending). A zone with no gateway (no responders) is skipped; when no
// zone has one, the answer is 503.
func (rt *roundTrip) publishHead() (pending *nats.Msg, resp *http.Response, err error) {
	st, probe, msg := rt.st, rt.probe, rt.msg
	accepted := false
	for i, subj := range rt.subjects {
		msg.Subject = subj
		if err := rt.t.nc.PublishMsg(msg); err != nil {
			return nil, nil, rt.fail("publish_error", fmt.Errorf("publishing to %s: %w", subj, err))
		}
	wait:
		for {
			select {
			case <-st.peerCh:
				accepted = true
				break wait
			case m := <-st.ch:
				f, err := parseFrame(m)
				if err != nil {
					return nil, nil, rt.fail("bad_frame", err)
				}
				if f.kind == kindNoResponders {
					if i+1 < len(rt.subjects) {
						proxyFailovers.Inc()
						rt.log.Debug("no gateway in zone, failing over", zap.String("zone", rt.zones[i]), zap.String("next", rt.zones[i+1]))
					}
					break wait
				}
				accepted, pending = true, m
				break wait
			case <-st.cancelCh:
				return nil, nil, rt.fail("aborted", peerError{"stream aborted"})
			case <-probe.C():
				left := time.Until(rt.acceptBy)
				if left <= 0 {
					return nil, nil, rt.fail("gateway_gone", gatewayGoneError{"no stage gateway acknowledged the request on " + subj + " (lost with a NATS server or a gateway)"})
				}
				probe.rearm(min(left, probe.interval))
			case <-rt.ctx.Done():
				return nil, nil, rt.fail("client_gone", rt.ctx.Err())
			case <-rt.timer.C:
				return nil, nil, rt.fail("head_timeout", timeoutError{"the response head from " + subj})
			}
		}
		if accepted {
			rt.fields[len(rt.fields)-1] = zap.String("subject", subj)
			return pending, nil, nil
		}
	}
	probe.stop()
	st.close()
	proxyRequests.WithLabelValues("no_responders").Inc()
	rt.log.Warn("no stage gateway listens for this request", zap.Strings("subjects", rt.subjects))
	return nil, synthetic(rt.req, http.StatusServiceUnavailable, "no gateway available"), nil
}

// streamRequestBody streams the body after the head, if any, in the
// background; uploadDone gets its result, progress a tick per frame sent.
func (rt *roundTrip) streamRequestBody() (uploadDone chan error, progress chan struct{}) {
	done := make(chan error, 1)
	if rt.eof || rt.upgrade != "" {
		done <- nil
		return done, nil
	}
	// done and tick are not assigned again: the goroutine copies them
	// instead of moving them to the heap
	tick := make(chan struct{}, 1)
	go func() {
		done <- rt.t.upload(rt.ctx, rt.st, rt.body, rt.req.Trailer, rt.chunk, tick)
	}()
	return done, tick
}

// awaitResponseHead waits for the response head (unless publishHead got it
// already) while the body streams, probing the gateway meanwhile.
func (rt *roundTrip) awaitResponseHead(pending *nats.Msg, uploadDone chan error, progress chan struct{}) (*nats.Msg, error) {
	st, probe := rt.st, rt.probe
	for pending == nil {
		select {
		case pending = <-st.ch:
		case err := <-uploadDone:
			if err != nil {
				return nil, rt.fail("upload_error", err)
			}
			uploadDone = nil
			rt.timer.Reset(rt.hdrTimeout)
		case <-progress:
			rt.timer.Reset(rt.hdrTimeout)
		case <-probe.C():
			probe.send()
		case a := <-st.probeCh:
			if err := probe.result(a, 0, len(st.ch)); err != nil {
				// a frame the gateway sent before it answered wins
				select {
				case pending = <-st.ch:
				default:
					return nil, rt.fail("gateway_gone", err)
				}
			}
		case <-st.cancelCh:
			return nil, rt.fail("aborted", peerError{"stream aborted"})
		case <-rt.ctx.Done():
			return nil, rt.fail("client_gone", rt.ctx.Err())
		case <-rt.timer.C:
			return nil, rt.fail("head_timeout", timeoutError{"the response head"})
		}
	}
	return pending, nil
}

// response turns the response head frame into the proxy's response: a
// socket after a 101 to a WebSocket handshake, else a body that streams
// the gateway's data frames.
func (rt *roundTrip) response(pending *nats.Msg) (*http.Response, error) {
	t, req, st, probe, upgrade := rt.t, rt.req, rt.st, rt.probe, rt.upgrade
	f, err := parseFrame(pending)
	if err != nil {
		return nil, rt.fail("bad_frame", err)
	}
	switch f.kind {
	case kindResp:
	case kindError:
		return nil, rt.fail("gateway_error", peerError{"gateway failed: " + f.errMsg})
	case kindNoResponders:
		return nil, rt.fail("gateway_gone", gatewayGoneError{"the stage gateway serving the request is gone"})
	default:
		return nil, rt.fail("bad_frame", fmt.Errorf("%w: want a resp frame, got %q", ErrBadFrame, f.kind))
	}
	hdr, err := f.fields(prefixHeader)
	if err != nil {
		return nil, rt.fail("bad_frame", err)
	}
	resp := &http.Response{
		Status:     statusLine(f.status),
		StatusCode: f.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        hdr,
		ContentLength: -1,
		Request:       req,
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	if req.Method == http.MethodHead || f.status == http.StatusNoContent || f.status == http.StatusNotModified {
		resp.ContentLength = 0
		if req.Method == http.MethodHead {
			if cl := hdr.Get("Content-Length"); cl != "" {
				resp.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
			}
		}
	}
	if s := f.get(hdrTrailer); s != "" {
		resp.Trailer = make(http.Header)
		for _, name := range strings.Split(s, ",") {
			if name = strings.TrimSpace(name); validHTTPToken(name) {
				resp.Trailer[http.CanonicalHeaderKey(name)] = nil
			}
		}
	}
	if upgrade != "" && f.status == http.StatusSwitchingProtocols {
		if f.get(hdrUpgrade) != upgrade || f.eof {
			return nil, rt.fail("bad_frame", fmt.Errorf("%w: a 101 response that does not switch to %s", ErrBadFrame, upgrade))
		}
		// the socket: gateway_check_interval probes bound an idle socket's
		// life when the gateway is gone; there is no chunk timeout
		resp.Header.Set("Upgrade", upgrade)
		resp.Header.Set("Connection", "Upgrade")
		resp.ContentLength = -1
		br := &bodyReader{st: st, ctx: rt.ctx, window: t.SocketWindow, buf: f.data, next: 1, probe: probe}
		resp.Body = &socket{
			br:  br,
			snd: &sender{st: st, ctx: rt.ctx, timeout: t.chunkTimeout()},
			max: rt.chunk, log: rt.log,
		}
		proxyRequests.WithLabelValues("upgraded").Inc()
		if slot, _ := rt.ctx.Value(socketSlotKey{}).(*socketSlot); slot != nil {
			return rt.takeOver(slot, resp, resp.Body.(*socket))
		}
		return resp, nil
	}
	br := &bodyReader{
		st: st, ctx: rt.ctx, timeout: t.chunkTimeout(), window: t.Window,
		buf: f.data, next: 1, eof: f.eof, trailer: resp.Trailer, probe: probe,
	}
	if f.eof {
		probe.stop()
		br.probe = nil
		if tr, err := f.fields(prefixTrailer); err == nil && len(tr) > 0 {
			if resp.Trailer == nil {
				resp.Trailer = make(http.Header)
			}
			for k, vv := range tr {
				resp.Trailer[k] = vv
			}
		}
	}
	if resp.Trailer == nil {
		// late trailers fill this map (the proxy announces them then)
		resp.Trailer = make(http.Header)
		br.trailer = resp.Trailer
	}
	resp.Body = &respBody{br: br, t: t, log: rt.log}
	proxyOK.Inc()
	return resp, nil
}

// headFields are the head frame's values that RoundTrip works out.
type headFields struct {
	host, trailerNames string
	// the client's address and scheme (clientAddr, clientScheme)
	client, scheme string
	// upgrade: "websocket" for a WebSocket handshake
	upgrade string
}

// clientAddr is the client's IP address as the edge's server resolved it
// (Caddy's client_ip variable, which honours the server's trusted_proxies
// and client_ip_headers), else the connection's peer; "" when neither is an
// IP address.
func clientAddr(req *http.Request) string {
	ip, _ := caddyhttp.GetVar(req.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip, _, _ = net.SplitHostPort(req.RemoteAddr)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	if a.Zone() != "" {
		return a.WithZone("").String()
	}
	return ip
}

// clientScheme is how the client reached the edge: the X-Forwarded-Proto the
// edge's reverse proxy set just before the round trip (its own scheme, or a
// trusted proxy's value, as its trusted_proxies decide), else whether the
// request came over TLS.
func clientScheme(req *http.Request) string {
	if vv := req.Header["X-Forwarded-Proto"]; len(vv) > 0 {
		switch v := vv[len(vv)-1]; v {
		case "http", "https":
			return v
		}
	}
	if req.TLS != nil {
		return "https"
	}
	return "http"
}

// headMsg builds the head frame in the transport's protocol version, with
// the end of the body when there is none or when inline; then first is
// where the inline body goes (its ContentLength bytes, in the message).
func (t *Transport) headMsg(req *http.Request, hf headFields, length int64, inline bool) (msg *nats.Msg, first []byte) {
	host, trailerNames := hf.host, hf.trailerNames
	eof := (inline || req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0) && hf.upgrade == ""
	lengthValue := "0"
	if length != 0 {
		lengthValue = strconv.FormatInt(length, 10)
	}
	path := req.URL.EscapedPath()
	window := t.windowValue
	if hf.upgrade != "" {
		window = t.socketWindowValue
	}
	if t.ProtocolVersion == 1 {
		head := newFrame(kindHead, 14+len(req.Header))
		head[hdrVersion] = constValue(protoVersion)
		head[hdrBind] = constValue("1")
		head[hdrScheme] = constValue(hf.scheme)
		if hf.client != "" {
			head[hdrClient] = []string{hf.client}
		}
		head[hdrMethod] = constValue(req.Method)
		head[hdrPath] = []string{path}
		head[hdrQuery] = []string{req.URL.RawQuery}
		head[hdrHost] = []string{host}
		head[hdrWindow] = window
		head[hdrTimeout] = t.timeoutValue
		putHTTPFields(head, req.Header, prefixHeader)
		if trailerNames != "" {
			head[hdrTrailer] = []string{trailerNames}
		}
		head[hdrLength] = constValue(lengthValue)
		if hf.upgrade != "" {
			head[hdrUpgrade] = []string{hf.upgrade}
		}
		if eof {
			head[hdrEOF] = constValue("1")
		}
		if inline {
			first = make([]byte, req.ContentLength)
		}
		return &nats.Msg{Header: head, Data: first}, first
	}
	size := 96 + len(req.Method) + len(path) + len(req.URL.RawQuery) + len(host) + len(trailerNames) + len(hf.client) + v2FieldsSize(req.Header)
	if inline {
		size += int(req.ContentLength)
	}
	b := appendV2Start(make([]byte, 0, size), v2KindHead)
	b = appendV2Ctl(b, 'm', req.Method)
	b = appendV2Ctl(b, 'p', path)
	b = appendV2Ctl(b, 'q', req.URL.RawQuery)
	b = appendV2Ctl(b, 'h', host)
	b = appendV2Ctl(b, 'w', window[0])
	b = appendV2Ctl(b, 't', t.timeoutValue[0])
	b = appendV2Ctl(b, 'b', "1")
	if t.ProtocolVersion >= 3 {
		b = appendV2Ctl(b, 'f', "1")
	}
	b = appendV2Ctl(b, 'u', hf.scheme)
	if hf.client != "" {
		b = appendV2Ctl(b, 'c', hf.client)
	}
	if trailerNames != "" {
		b = appendV2Ctl(b, 'r', trailerNames)
	}
	b = appendV2Fields(b, v2TagHTTP, req.Header)
	b = appendV2Ctl(b, 'l', lengthValue)
	if hf.upgrade != "" {
		b = appendV2Ctl(b, 'g', hf.upgrade)
	}
	if eof {
		b = appendV2Ctl(b, 'e', "1")
	}
	b = append(b, v2End)
	if inline {
		n := len(b)
		b = slices.Grow(b, int(req.ContentLength))[:n+int(req.ContentLength)]
		first = b[n:]
	}
	return &nats.Msg{Data: b}, first
}

// upload streams the request body after the inline part.
func (t *Transport) upload(ctx context.Context, st *stream, body io.Reader, trailer http.Header, chunk int, progress chan struct{}) error {
	snd := &sender{st: st, ctx: ctx, timeout: t.chunkTimeout()}
	// the buffer starts small and grows to a chunk only for bodies that
	// keep it full: a small streamed body does not cost a whole chunk
	buf := make([]byte, min(chunk, 64<<10))
	for {
		n, err := readChunk(body, buf)
		full := n == len(buf)
		eof := errors.Is(err, io.EOF)
		if err != nil && !eof {
			return fmt.Errorf("reading request body: %w", err)
		}
		if eof && len(trailer) > 0 {
			trailer = requestTrailers(trailer)
		}
		if n > 0 && len(trailer) > 0 && eof {
			// data first, trailers in a frame of their own
			if err := snd.sendData(buf[:n], false, nil); err != nil {
				return err
			}
			n = 0
		}
		if n > 0 || eof {
			if err := snd.sendData(buf[:n], eof, trailer); err != nil {
				return err
			}
			select {
			case progress <- struct{}{}:
			default:
			}
		}
		if eof {
			return nil
		}
		if full && len(buf) < chunk {
			buf = make([]byte, min(2*len(buf), chunk))
		}
	}
}

// respBody is the response body handed to the reverse proxy.
type respBody struct {
	br     *bodyReader
	t      *Transport
	log    lazyLogger
	closed bool
}

// lazyLogger adds request fields only to lines that are written.
type lazyLogger struct {
	base   *zap.Logger
	fields *[]zap.Field
}

func (l lazyLogger) write(lvl zapcore.Level, msg string, extra ...zap.Field) {
	if c := l.base.Check(lvl, msg); c != nil {
		c.Write(append(append([]zap.Field(nil), *l.fields...), extra...)...)
	}
}

func (l lazyLogger) Warn(msg string, f ...zap.Field)  { l.write(zapcore.WarnLevel, msg, f...) }
func (l lazyLogger) Error(msg string, f ...zap.Field) { l.write(zapcore.ErrorLevel, msg, f...) }
func (l lazyLogger) Debug(msg string, f ...zap.Field) { l.write(zapcore.DebugLevel, msg, f...) }

func (r *respBody) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	if err != nil && err != io.EOF {
		r.log.Warn("nats response stream failed", zap.Error(err))
	}
	return n, err
}

func (r *respBody) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if !r.br.eof {
		r.br.st.sendControl(kindCancel, 0, "client closed the response")
	}
	r.br.stop()
	r.br.st.abort()
	r.br.st.close()
	return nil
}

// statusLines are the Status texts of http.Response for 100-599.
var statusLines = func() (s [500]string) {
	for i := range s {
		s[i] = fmt.Sprintf("%d %s", 100+i, http.StatusText(100+i))
	}
	return
}()

func statusLine(code int) string {
	if code >= 100 && code <= 599 {
		return statusLines[code-100]
	}
	return fmt.Sprintf("%d %s", code, http.StatusText(code))
}

// synthetic builds a response the transport answers itself.
func synthetic(req *http.Request, status int, msg string) *http.Response {
	body := msg + "\n"
	return &http.Response{
		Status:     statusLine(status),
		StatusCode: status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":       {"text/plain; charset=utf-8"},
			"Content-Length":     {strconv.Itoa(len(body))},
			"Neo-Nats-Synthetic": {"1"},
		},
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(strings.NewReader(body)),
		Request:       req,
	}
}

// Interface guards
var (
	_ caddy.Provisioner         = (*Transport)(nil)
	_ caddy.Validator           = (*Transport)(nil)
	_ caddy.CleanerUpper        = (*Transport)(nil)
	_ http.RoundTripper         = (*Transport)(nil)
	_ reverseproxy.TLSTransport = (*Transport)(nil)
)

// TLSEnabled reports false: NATS connections carry their own TLS settings.
func (t *Transport) TLSEnabled() bool { return false }

// EnableTLS is not supported: configure TLS on the nats connection.
func (t *Transport) EnableTLS(*reverseproxy.TLSConfig) error {
	return errors.New("nats transport: configure TLS on the nats app connection, not the transport")
}

// socket is the response body of a 101 to a WebSocket handshake: the reverse
// proxy reads the gateway's bytes from it (data frames, in order, under
// credit) and writes the client's bytes to it (data frames under the
// gateway's credit). Closing it, or the end of either direction, cancels
// the stream, which ends the socket on the gateway too.
type socket struct {
	br  *bodyReader
	snd *sender
	max int
	log lazyLogger

	wmu    sync.Mutex // one writer of data frames at a time
	mu     sync.Mutex
	closed bool

	// set when the transport took the client's connection over (see
	// sockets.go): the socket's own context, and the config's sockets
	cancel context.CancelFunc
	set    *socketSet
	// goingAway: the close reason when its config was replaced or the
	// process exits (close code 1001)
	goingAway atomic.Pointer[string]

	// the gateway-to-client direction's frames (read by one goroutine):
	// when the stream fails between two frames and no close frame went
	// by, the client gets one (1011, or 1001 from a gateway going away)
	// before the end, never a bare connection reset
	frames  wsFrames
	pending []byte
	perr    error
}

func (s *socket) Read(p []byte) (int, error) {
	if s.pending != nil {
		n := copy(p, s.pending)
		if s.pending = s.pending[n:]; len(s.pending) == 0 {
			s.pending = nil
		}
		return n, nil
	}
	if s.perr != nil {
		return 0, s.perr
	}
	n, err := s.br.Read(p)
	s.frames.feed(p[:n])
	if err != nil && err != io.EOF && !s.isClosed() {
		s.log.Warn("nats websocket stream failed", zap.Error(err))
		if n == 0 && s.frames.atBoundary() && !s.frames.closeSeen && len(p) > 0 {
			code, reason := closeCodeFor(err)
			if r := s.goingAway.Load(); r != nil {
				code, reason = wsGoingAway, *r
			}
			s.pending, s.perr = closeFrame(code, reason), err
			s.frames.closeSeen = true
			return s.Read(p)
		}
	}
	return n, err
}

func (s *socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		n := min(len(p), s.max)
		if err := s.snd.sendData(p[:n], false, nil); err != nil {
			return written, err
		}
		p, written = p[n:], written+n
	}
	return written, nil
}

func (s *socket) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.br.st.sendControl(kindCancel, 0, "websocket closed")
	s.br.stop()
	s.br.st.abort()
	s.br.st.close()
	if s.cancel != nil {
		s.cancel()
	}
	return nil
}
