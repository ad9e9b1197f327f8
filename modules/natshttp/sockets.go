package natshttp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/projectneo/caddy-neo/internal/cfblock"
)

// The lean WebSocket path. Caddy's reverse_proxy carries an upgraded
// connection with four goroutines for its whole life (the request's, two
// copiers and a cancel watcher) and keeps the request's state alive: about
// 80 KiB per idle socket on each proxy. A WebSocket carried over NATS needs
// neither: once the 101 is through, the socket's two directions are two
// shallow goroutines (one waits for the next frame from NATS, one for the
// next bytes from the connection) and the request returns.
//
//   - On the edge, neo_nats_sockets (before reverse_proxy) lets the
//     neo_nats transport take over the client's connection after the
//     gateway's 101.
//   - On a stage gateway, the stage server's reverse_proxy uses transport
//     neo_http (Caddy's http transport) and the gateway takes over the
//     replica's connection after its 101.
//
// On the edge the reverse proxy is then handed a 101 with an Upgrade it
// did not ask for, which it drops without writing anything (the client
// already has its 101, written through the route's response writer, so the
// access log has it). On a gateway it is handed a 101 whose connection and
// hijacked client are already at their end: it writes the 101 through the
// route's writers (the stage server's access log records it; the edge
// already has it) and its tunnel ends at once.

func init() {
	caddy.RegisterModule(Sockets{})
	caddy.RegisterModule(ReplicaTransport{})
	httpcaddyfile.RegisterHandlerDirective("neo_nats_sockets", cfblock.Handler[Sockets])
	httpcaddyfile.RegisterDirectiveOrder("neo_nats_sockets", httpcaddyfile.Before, "reverse_proxy")
}

// takenUpgrade is the Upgrade of the 101 the edge's reverse proxy gets when
// a socket was taken over: it matches no request's, so the proxy only logs it
// (at debug level) and returns.
const takenUpgrade = "neo-nats-socket"

// takenResponse is what RoundTrip returns to the reverse proxy once the
// socket is carried without it.
func takenResponse(req *http.Request) *http.Response {
	return &http.Response{
		Status: statusLine(http.StatusSwitchingProtocols), StatusCode: http.StatusSwitchingProtocols,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Upgrade": {takenUpgrade}, "Connection": {"Upgrade"}},
		Body:   http.NoBody, ContentLength: -1, Request: req,
	}
}

// Sockets ("neo_nats_sockets", an edge handler placed before reverse_proxy
// with transport neo_nats) carries the WebSockets that reverse proxy
// opens over NATS without the proxy's per-socket goroutines: after the
// gateway's 101 the transport writes the 101 to the client, takes the
// client's connection and the handler returns. Other requests pass
// through untouched.
//
// After a config reload the sockets of the old config go on for
// stream_close_delay, then get close code 1001 (going away), as
// reverse_proxy's own stream_close_delay does.
type Sockets struct {
	// StreamCloseDelay is how long sockets outlive the config that opened
	// them (default 0: they end when it is replaced).
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	set *socketSet
}

// CaddyModule returns the Caddy module information.
func (Sockets) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.neo_nats_sockets", New: func() caddy.Module { return new(Sockets) }}
}

// Provision sets up the handler.
func (h *Sockets) Provision(caddy.Context) error {
	h.set = &socketSet{m: make(map[*socket]struct{}), empty: make(chan struct{})}
	return nil
}

// Validate checks the configuration.
func (h *Sockets) Validate() error {
	if h.StreamCloseDelay < 0 {
		return fmt.Errorf("stream_close_delay: must not be negative, got %v", time.Duration(h.StreamCloseDelay))
	}
	return nil
}

// Cleanup ends the sockets of this config stream_close_delay from now; when
// the process exits, now (their clients get 1001 before it ends, within
// exitWait).
func (h *Sockets) Cleanup() error {
	if h.set == nil {
		return nil
	}
	if caddy.Exiting() {
		h.set.closeAfter(0)
		h.set.wait(exitWait)
		return nil
	}
	h.set.closeAfter(time.Duration(h.StreamCloseDelay))
	return nil
}

// exitWait bounds how long an exiting process waits for its sockets'
// close frames to go out.
const exitWait = 2 * time.Second

// ServeHTTP marks a WebSocket handshake so that the transport may take it
// over; the request goes on down the route.
func (h *Sockets) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.ProtoMajor == 1 && r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		r = r.WithContext(context.WithValue(r.Context(), socketSlotKey{}, &socketSlot{w: w, set: h.set}))
	}
	return next.ServeHTTP(w, r)
}

// UnmarshalCaddyfile parses
//
//	neo_nats_sockets {
//	    stream_close_delay <duration>
//	}
func (h *Sockets) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return cfblock.Walk(d, "neo_nats_sockets", func(name string) error {
		switch name {
		case "stream_close_delay":
			v, err := cfblock.One(d)
			if err != nil {
				return err
			}
			h.StreamCloseDelay, err = cfblock.Duration(d, name, v)
			return err
		}
		return cfblock.Unknown(d, "neo_nats_sockets", name)
	})
}

// socketSlotKey is the context key of a handshake the transport may take
// over (a *socketSlot).
type socketSlotKey struct{}

// socketSlot is the client's side of a handshake: its response writer and
// the set its socket joins.
type socketSlot struct {
	w   http.ResponseWriter
	set *socketSet
}

// socketSet is the sockets of one config, ended with 1001 some time after
// the config is replaced.
type socketSet struct {
	mu     sync.Mutex
	m      map[*socket]struct{}
	closed bool
	// empty is closed when the set is closed and its last socket ended
	empty     chan struct{}
	emptyOnce sync.Once
}

// add registers s; false when the set already ended its sockets.
func (ss *socketSet) add(s *socket) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.m[s] = struct{}{}
	return true
}

func (ss *socketSet) remove(s *socket) {
	ss.mu.Lock()
	delete(ss.m, s)
	if ss.closed && len(ss.m) == 0 {
		ss.emptyOnce.Do(func() { close(ss.empty) })
	}
	ss.mu.Unlock()
}

// wait waits, at most d, until the closed set's sockets have ended.
func (ss *socketSet) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ss.empty:
	case <-t.C:
	}
}

func (ss *socketSet) closeAfter(d time.Duration) {
	end := func() {
		ss.mu.Lock()
		ss.closed = true
		if len(ss.m) == 0 {
			ss.emptyOnce.Do(func() { close(ss.empty) })
		}
		all := make([]*socket, 0, len(ss.m))
		for s := range ss.m {
			all = append(all, s)
		}
		ss.mu.Unlock()
		reason := &reasonReplaced
		if caddy.Exiting() {
			reason = &reasonExiting
		}
		for _, s := range all {
			s.goAway(reason)
		}
	}
	if d <= 0 {
		end()
		return
	}
	time.AfterFunc(d, end)
}

// hopHeaders are removed from a 101 before it goes on (RFC 9110 section
// 7.6.1), as Caddy's reverse proxy does; Upgrade and Connection are set
// again.
var hopHeaders = []string{
	"Alt-Svc", "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// switchingHeader is the header of a 101 the way a proxy passes it on.
func switchingHeader(dst, src http.Header, upgrade string) {
	for _, f := range src["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				src.Del(sf)
			}
		}
	}
	for _, h := range hopHeaders {
		src.Del(h)
	}
	for k, vv := range src {
		dst[k] = vv
	}
	dst.Set("Upgrade", upgrade)
	dst.Set("Connection", "Upgrade")
}

// wsHeaderCase spells the WebSocket handshake's fields the way RFC 6455
// does, for clients that compare them case-sensitively.
var wsHeaderCase = map[string]string{
	"Sec-Websocket-Accept":     "Sec-WebSocket-Accept",
	"Sec-Websocket-Protocol":   "Sec-WebSocket-Protocol",
	"Sec-Websocket-Extensions": "Sec-WebSocket-Extensions",
	"Sec-Websocket-Version":    "Sec-WebSocket-Version",
}

// takeOver answers the client's handshake with the gateway's 101, takes the
// client's connection and carries the socket with two goroutines; the
// reverse proxy gets takenResponse.
func (rt *roundTrip) takeOver(slot *socketSlot, resp *http.Response, s *socket) (*http.Response, error) {
	h := slot.w.Header()
	switchingHeader(h, resp.Header, rt.upgrade)
	for k, rk := range wsHeaderCase {
		if v, ok := h[k]; ok {
			delete(h, k)
			h[rk] = v
		}
	}
	slot.w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(slot.w).Hijack()
	if err != nil {
		_ = s.Close()
		return nil, rt.fail("hijack", fmt.Errorf("taking the client's connection: %w", err))
	}
	// The socket outlives the request: its context is its own, and its log
	// lines keep only their fields of the request.
	ctx, cancel := context.WithCancel(context.Background())
	s.br.ctx, s.snd.ctx, s.cancel = ctx, ctx, cancel
	fields := append([]zap.Field(nil), rt.fields...)
	s.log = lazyLogger{base: rt.t.logger, fields: &fields}
	s.set = slot.set
	end := func() {
		_ = s.Close()
		_ = conn.Close()
		s.set.remove(s)
	}
	if n := brw.Reader.Buffered(); n > 0 {
		// bytes the client sent right after its handshake
		p, _ := brw.Reader.Peek(n)
		if _, err := s.Write(p); err != nil {
			end()
			return takenResponse(rt.req), nil
		}
	}
	if !slot.set.add(s) {
		// the config was replaced meanwhile
		s.goAway(&reasonReplaced)
	}
	go func() {
		_, _ = s.WriteTo(conn)
		end()
	}()
	go func() {
		_, _ = s.ReadFrom(conn)
		end()
	}()
	return takenResponse(rt.req), nil
}

// Close reasons of an edge socket's 1001.
var (
	reasonReplaced = "edge config replaced"
	reasonExiting  = "edge going away"
)

// goAway ends an edge socket because its config was replaced or the
// process exits (reason): the client gets close code 1001 between two
// frames, the gateway a cancel.
func (s *socket) goAway(reason *string) {
	s.goingAway.Store(reason)
	s.br.st.abort()
}

// ReplicaTransport ("neo_http") is Caddy's http transport for a stage
// server's reverse_proxy to the replicas, which lets the stage gateway carry
// a WebSocket that came over NATS itself once the replica answered 101
// (see the top of this file). It takes all of the http transport's options.
type ReplicaTransport struct {
	reverseproxy.HTTPTransport
}

// CaddyModule returns the Caddy module information.
func (ReplicaTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.reverse_proxy.transport.neo_http", New: func() caddy.Module { return new(ReplicaTransport) }}
}

// RoundTrip is the http transport's; a 101 to a WebSocket handshake that a
// gateway serves is taken over by the gateway.
func (t *ReplicaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.HTTPTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	w, _ := req.Context().Value(gatewaySlotKey{}).(*respWriter)
	if w == nil {
		return resp, nil
	}
	return w.takeOver(req, resp)
}

// gatewaySlotKey is the context key of a gateway's WebSocket handshake (its
// *respWriter).
type gatewaySlotKey struct{}

// takeOver sends the replica's 101 to the edge and carries the socket with
// two goroutines: the edge's frames to the replica's connection, the
// replica's bytes to the edge.
func (w *respWriter) takeOver(req *http.Request, resp *http.Response) (*http.Response, error) {
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || w.upgrade == "" || !strings.EqualFold(resp.Header.Get("Upgrade"), w.upgrade) || w.hijacked.Load() || w.headWasSent() {
		return resp, nil // the reverse proxy decides
	}
	switchingHeader(w.header, resp.Header, w.upgrade)
	w.status = http.StatusSwitchingProtocols
	c, err := w.socket(false)
	if err != nil {
		_ = backend.Close()
		return nil, err
	}
	w.taken = true
	c.backend = backend
	// the socket stays a request in flight (max_in_flight) until it ends;
	// its serve returns now
	w.g.inflight.Add(1)
	w.g.inFlightGauge.Inc()
	// the head went out: what the reverse proxy adds to it now only goes
	// into the stage server's access log, once
	delete(w.header, "Upgrade")
	delete(w.header, "Connection")
	go func() {
		_, _ = c.WriteTo(backend)
		c.end()
	}()
	go func() {
		_, _ = readLoop(backend, c.Write)
		c.end()
	}()
	return &http.Response{
		Status: statusLine(http.StatusSwitchingProtocols), StatusCode: http.StatusSwitchingProtocols,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Upgrade": {w.upgrade}, "Connection": {"Upgrade"}},
		Body:   endedConn{}, ContentLength: -1, Request: req,
	}, nil
}

// endedConn is a connection at its end: the replica's side and the
// hijacked client the reverse proxy gets for a socket the gateway took
// over, so that its tunnel ends as soon as it starts.
type endedConn struct{}

func (endedConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (endedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (endedConn) Close() error                     { return nil }
func (endedConn) LocalAddr() net.Addr              { return socketAddr{} }
func (endedConn) RemoteAddr() net.Addr             { return socketAddr{} }
func (endedConn) SetDeadline(time.Time) error      { return nil }
func (endedConn) SetReadDeadline(time.Time) error  { return nil }
func (endedConn) SetWriteDeadline(time.Time) error { return nil }

// end closes both sides of a taken-over gateway socket and releases the
// request's stream.
func (c *gatewaySocket) end() {
	_ = c.Close()
	c.endOnce.Do(func() {
		c.w.g.inflight.Add(-1)
		c.w.g.inFlightGauge.Dec()
		_ = c.backend.Close()
		if c.w.release != nil {
			c.w.release()
		}
	})
}

// Buffers of readLoop: an idle socket waits for its next bytes in a small
// buffer of its own; a read that fills it goes on in a pooled one until a
// read comes up short.
const (
	smallReadBuffer = 1 << 10
	largeReadBuffer = 16 << 10
)

var largeBuffers = sync.Pool{New: func() any { b := make([]byte, largeReadBuffer); return &b }}

// readLoop sends r's bytes with send as they arrive, until r ends (nil at
// EOF) or send fails.
func readLoop(r io.Reader, send func([]byte) (int, error)) (int64, error) {
	small := make([]byte, smallReadBuffer)
	buf := small
	var large *[]byte
	defer func() {
		if large != nil {
			largeBuffers.Put(large)
		}
	}()
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := send(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		switch {
		case n == len(buf) && large == nil:
			large = largeBuffers.Get().(*[]byte)
			buf = *large
		case n < smallReadBuffer && large != nil:
			largeBuffers.Put(large)
			large, buf = nil, small
		}
	}
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Sockets)(nil)
	_ caddy.Provisioner           = (*Sockets)(nil)
	_ caddy.Validator             = (*Sockets)(nil)
	_ caddy.CleanerUpper          = (*Sockets)(nil)
	_ caddyfile.Unmarshaler       = (*Sockets)(nil)
	_ http.RoundTripper           = (*ReplicaTransport)(nil)
)
