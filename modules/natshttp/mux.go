package natshttp

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/projectneo/caddy-neo/modules/natsconn"
)

// mux is one wildcard subscription on <prefix>.> that routes messages to
// per-request streams by the token after the prefix, so a request costs no
// SUB/UNSUB.
//
// Every stream has an inbox of its own, <prefix>.<token>, whose token is 128
// bits from crypto/rand: an inbox says nothing about any other request's.
// A stream is bound to one peer, identified by the NATS reply subject that
// every frame of the protocol carries (the sender's own per-request inbox):
//
//   - On the edge (edge is true) the stream is unbound until a gateway
//     accepts the request: its first credit or resp frame pins the gateway's
//     inbox (its reply subject). From then on a frame whose reply subject is
//     not that inbox is dropped, counted and logged, and the edge sends its
//     frames to that inbox only. Each frame the edge sends carries a reply
//     subject of its own, <inbox>.<n> (n = 1, 2, ...): nats-server grants
//     the gateway the right to publish to a reply subject (allow_responses)
//     when it delivers the message, for a number of messages and a time
//     counted from that first delivery, so each frame gives the gateway a
//     fresh grant that outlasts what it sends before the next one.
//     The edge never answers probes: a probe frame from its gateway is the
//     answer to its own probe.
//   - On a gateway the peer is the edge's inbox, the head's reply subject.
//     When the head announces that the edge binds (version 2 tag 'b',
//     version 1 Neo-Nats-Bind), a frame whose reply subject is neither that
//     inbox nor one of its numbered reply subjects is dropped, counted and
//     logged. The gateway sends to the newest reply subject the edge gave and
//     answers a probe only to the probe's own (checked) reply subject.
type mux struct {
	nc     *nats.Conn
	prefix string
	// edge is the side: the edge's reply mux (true) or a gateway's.
	edge   bool
	logger *zap.Logger
	mu     sync.Mutex
	m      map[string]*stream
	sub    *nats.Subscription // nil while unsubscribed (after close)
	// release releases the hold on nc taken while subscribed.
	release func()
	// closing is set by close: the subscription ends with the last stream.
	closing bool
}

func newMux(nc *nats.Conn, edge bool, logger *zap.Logger) (*mux, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	mx := &mux{nc: nc, prefix: nc.NewInbox(), edge: edge, logger: logger, m: make(map[string]*stream)}
	if err := mx.subscribe(); err != nil {
		return nil, err
	}
	return mx, nil
}

// subscribe is called with mu held (or before the mux is shared).
func (mx *mux) subscribe() error {
	sub, err := mx.nc.Subscribe(mx.prefix+".>", mx.deliver)
	if err != nil {
		return err
	}
	// Streams are windowed, so pending stays small; these only guard
	// against a misbehaving peer.
	_ = sub.SetPendingLimits(1<<16, 1<<30)
	mx.sub = sub
	// While subscribed the mux has streams (or is in use): a reload that
	// replaces the connection leaves it open for them.
	mx.release = natsconn.Hold(mx.nc)
	return nil
}

// close ends the subscription once no stream is open. A config reload
// cleans up the old transport while the old servers still finish their
// requests (Caddy does not wait for them), so the streams of those requests
// keep the subscription until they close; unsubscribing at once would cut
// every response still streaming and drop frames already on their way.
func (mx *mux) close() {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	mx.closing = true
	if len(mx.m) == 0 {
		mx.unsubscribe()
	}
}

// unsubscribe is called with mu held.
func (mx *mux) unsubscribe() {
	if mx.sub != nil {
		_ = mx.sub.Unsubscribe()
		mx.sub = nil
		mx.release()
	}
}

// tokenChars is the length of a stream token: 16 bytes from crypto/rand in
// base32 without padding.
const tokenChars = 26

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newInbox returns a fresh inbox under the mux's prefix, <prefix>.<token>,
// and its token (one allocation).
func (mx *mux) newInbox() (inbox, tok string) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand, Go 1.24+)
	var enc [tokenChars]byte
	tokenEncoding.Encode(enc[:], raw[:])
	var b strings.Builder
	b.Grow(len(mx.prefix) + 1 + tokenChars)
	b.WriteString(mx.prefix)
	b.WriteByte('.')
	b.Write(enc[:])
	inbox = b.String()
	return inbox, inbox[len(mx.prefix)+1:]
}

// streamOpts describe a stream being opened.
type streamOpts struct {
	window int
	// peer (gateway side) is the edge's inbox, the head's reply subject;
	// bind makes the stream accept frames only from it.
	peer string
	bind bool
	// compact: send data and credit frames in version 3 (proto2.go)
	compact bool
	// tenant, app and subject go into the log lines about dropped frames.
	tenant, app, subject string
}

// stream receives the messages of one request.
type stream struct {
	mx    *mux
	token string
	inbox string
	// ch receives every frame except credit, cancel and probe frames.
	ch chan *nats.Msg
	// credit counts frames the peer allows us to send; creditCh is signalled
	// when it grows.
	mu       sync.Mutex
	credit   int
	creditCh chan struct{}
	// peer is the peer's inbox once known: on the edge the accepting
	// gateway's (peerCh is closed then), on a gateway the edge's.
	peer   string
	peerCh chan struct{}
	// to is where a gateway sends: the newest of the edge's reply subjects
	// (toN its number; the head's reply subject is number 0).
	to  string
	toN uint64
	// bind: frames not from peer are dropped (the edge always binds).
	bind bool
	// compact: this side sends compact data and credit frames (set at
	// open, never changed)
	compact bool
	// replies numbers the edge's reply subjects <inbox>.<n>.
	replies atomic.Uint64
	// rejected counts the frames dropped, so that only the first few are
	// logged.
	rejected atomic.Int32
	// overflow is set when the peer sent more than its window allowed.
	overflow atomic.Bool
	canceled atomic.Bool
	// heard is when the last frame from the peer arrived (unix ns), kept
	// only for WebSockets (watchPeer): a gateway's socket ends when its
	// edge, which probes it, falls silent
	heard     atomic.Int64
	keepHeard atomic.Bool
	cancelCh  chan struct{}
	closeOnce sync.Once
	cancelFn  func()
	// probeCh receives the answers to this stream's probes (edge side).
	probeCh chan probeAnswer
	// sent is the last frame this side sent on the stream: -1 none, 0 the
	// head (resp), n the data frame n. Probe answers carry it.
	sent atomic.Int64
	// for log lines
	tenant, app, subject string
}

// probeAnswer is a probe's result and, when the peer is alive, the last
// frame it sent (-1 when none or unknown).
type probeAnswer struct {
	r    probeResult
	sent int64
}

// probeResult is what a probe of the peer found.
type probeResult int

const (
	probeAlive   probeResult = iota // the peer serves the request
	probeGone                       // no responders: the peer's connection is gone
	probeUnknown                    // the peer no longer knows the request
)

// errNotInProgress is the error a gateway answers a probe of a request it
// does not have with.
const errNotInProgress = "request not in progress"

// abort wakes everything waiting on the stream.
func (s *stream) abort() {
	s.closeOnce.Do(func() {
		close(s.cancelCh)
		if s.cancelFn != nil {
			s.cancelFn()
		}
	})
}

// open registers a new stream with a fresh inbox. A request that reaches a
// closed mux (one accepted by an old server just before its reload)
// subscribes it again for as long as it runs.
func (mx *mux) open(o streamOpts) (*stream, error) {
	inbox, tok := mx.newInbox()
	s := &stream{
		mx: mx, token: tok, inbox: inbox,
		ch:       make(chan *nats.Msg, o.window+8),
		creditCh: make(chan struct{}, 1),
		peerCh:   make(chan struct{}),
		cancelCh: make(chan struct{}),
		probeCh:  make(chan probeAnswer, 4),
		bind:     o.bind || mx.edge,
		compact:  o.compact,
		tenant:   o.tenant, app: o.app, subject: o.subject,
	}
	if o.peer != "" {
		s.peer, s.to = o.peer, o.peer
		close(s.peerCh)
	}
	s.sent.Store(-1)
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if mx.sub == nil {
		if err := mx.subscribe(); err != nil {
			return nil, err
		}
	}
	mx.m[tok] = s
	return s, nil
}

// close removes the stream; the last one of a closed mux ends its
// subscription. Closing twice is harmless.
func (s *stream) close() {
	mx := s.mx
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if _, ok := mx.m[s.token]; !ok {
		return
	}
	delete(mx.m, s.token)
	if mx.closing && len(mx.m) == 0 {
		mx.unsubscribe()
	}
}

// msgKind is a message's frame kind as far as routing needs it: the
// version 1 kind field, head or resp for a version 2 frame, no-responders
// for a NATS "503 no responders" status, else "".
func msgKind(m *nats.Msg) string {
	if len(m.Header) == 0 {
		if isV2(0, m.Data) && len(m.Data) > len(v2Magic) {
			switch m.Data[len(v2Magic)] {
			case v2KindHead:
				return kindHead
			case v2KindResp:
				return kindResp
			case v2KindData:
				return kindData
			case v2KindCredit:
				return kindCredit
			}
		}
		return ""
	}
	if k := m.Header.Get(hdrKind); k != "" {
		return k
	}
	if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
		return kindNoResponders
	}
	return ""
}

func (mx *mux) deliver(m *nats.Msg) {
	tok := m.Subject[min(len(mx.prefix)+1, len(m.Subject)):]
	if i := strings.IndexByte(tok, '.'); i >= 0 {
		tok = tok[:i]
	}
	mx.mu.Lock()
	s := mx.m[tok]
	mx.mu.Unlock()
	kind := msgKind(m)
	if mx.edge {
		mx.deliverEdge(s, m, kind)
	} else {
		mx.deliverGateway(s, m, kind)
	}
}

// deliverEdge takes a frame for one of the edge's streams.
func (mx *mux) deliverEdge(s *stream, m *nats.Msg, kind string) {
	if s == nil {
		// a late frame of a finished request, or one for no request
		mx.reject(nil, m, kind, reasonUnknownStream)
		return
	}
	if kind == kindNoResponders && m.Reply == "" {
		if s.peerInbox() == "" {
			s.push(m) // the head found no gateway in this zone
		} else {
			// a frame the edge sent found no gateway: it is gone
			s.probeAnswer(probeAnswer{r: probeGone, sent: -1})
		}
		return
	}
	if peer := s.peerInbox(); peer == "" {
		// only a gateway's first answer (its inbox with credit, or the
		// response) accepts the request; its reply subject is its inbox
		if kind != kindCredit && kind != kindResp {
			mx.reject(s, m, kind, reasonNotAccepted)
			return
		}
		if !s.pin(m.Reply) {
			mx.reject(s, m, kind, reasonWrongReply)
			return
		}
	} else if m.Reply != peer {
		mx.reject(s, m, kind, reasonWrongReply)
		return
	}
	switch kind {
	case kindProbe:
		// the answer to the edge's probe
		a := probeAnswer{r: probeAlive, sent: -1}
		if n, err := strconv.ParseInt(m.Header.Get(hdrSeq), 10, 64); err == nil && n >= 0 {
			a.sent = n
		}
		s.probeAnswer(a)
	case kindError:
		if m.Header.Get(hdrError) == errNotInProgress {
			s.probeAnswer(probeAnswer{r: probeUnknown, sent: -1})
			return
		}
		s.push(m)
	case kindCredit:
		s.takeCreditFrame(m)
	case kindCancel:
		s.canceled.Store(true)
		s.abort()
	case kindHead:
		mx.reject(s, m, kind, reasonUnexpectedKind)
	default:
		s.push(m)
	}
}

// deliverGateway takes a frame for one of a gateway's streams.
func (mx *mux) deliverGateway(s *stream, m *nats.Msg, kind string) {
	if s == nil {
		if kind == kindProbe && m.Reply != "" {
			// the edge asks about a request this gateway no longer has (its
			// response was lost): the answer names the inbox it asked
			h := newFrame(kindError, 2)
			h[hdrError] = constValue(errNotInProgress)
			_ = mx.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: m.Subject, Header: h})
		}
		mx.reject(nil, m, kind, reasonUnknownStream)
		return
	}
	if kind == kindNoResponders && m.Reply == "" {
		// a frame this gateway sent found nobody at the edge's inbox: the
		// edge is gone, stop the work
		s.canceled.Store(true)
		s.abort()
		return
	}
	if s.bind && !s.fromPeer(m.Reply) {
		mx.reject(s, m, kind, reasonWrongReply)
		return
	}
	if s.keepHeard.Load() {
		s.heard.Store(time.Now().UnixNano())
	}
	switch kind {
	case kindProbe:
		// answered to the probe's own reply subject, checked above when the
		// stream is bound (an unbound stream is an older edge's: it asks
		// with <inbox>_p)
		if m.Reply == "" {
			return
		}
		h := newFrame(kindProbe, 2)
		if n := s.sent.Load(); n >= 0 {
			h[hdrSeq] = []string{strconv.FormatInt(n, 10)}
		}
		_ = mx.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: s.inbox, Header: h})
	case kindCredit:
		s.takeCreditFrame(m)
	case kindCancel:
		s.canceled.Store(true)
		s.abort()
	case kindData:
		s.push(m)
	default:
		if s.bind {
			mx.reject(s, m, kind, reasonUnexpectedKind)
			return
		}
		s.push(m)
	}
}

// push queues a frame for the stream's reader; a peer that sends more than
// its window aborts the stream.
func (s *stream) push(m *nats.Msg) {
	select {
	case s.ch <- m:
	default:
		s.overflow.Store(true)
		s.abort()
	}
}

func (s *stream) probeAnswer(a probeAnswer) {
	select {
	case s.probeCh <- a:
	default:
	}
}

func (s *stream) takeCreditFrame(m *nats.Msg) {
	var n int
	var err error
	if len(m.Header) == 0 {
		n, err = parseCompactCredit(m.Data)
	} else {
		n, err = strconv.Atoi(m.Header.Get(hdrCredit))
	}
	if err == nil && n > 0 && n <= maxWindow {
		s.mu.Lock()
		s.credit = min(s.credit+n, maxCredit)
		s.mu.Unlock()
		select {
		case s.creditCh <- struct{}{}:
		default:
		}
	}
}

// maxCredit bounds the credit a peer can pile up.
const maxCredit = 1 << 20

// pin binds an edge stream to the gateway whose reply subject is in; it
// fails when in is not a subject or the stream is bound already.
func (s *stream) pin(in string) bool {
	if in == "" || !natsconn.ValidSubject(in) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer != "" {
		return s.peer == in
	}
	s.peer, s.to = in, in
	close(s.peerCh)
	return true
}

// fromPeer reports whether reply is the edge's inbox (the head's reply
// subject) or one of its numbered reply subjects <inbox>.<n>, and makes the
// newest of these where the gateway sends.
func (s *stream) fromPeer(reply string) bool {
	if len(reply) < len(s.peer) || reply[:len(s.peer)] != s.peer {
		return false
	}
	var n uint64
	if rest := reply[len(s.peer):]; rest != "" {
		// ".<n>": up to 19 digits, no leading zero
		if len(rest) < 2 || len(rest) > 20 || rest[0] != '.' || rest[1] == '0' {
			return false
		}
		for i := 1; i < len(rest); i++ {
			c := rest[i]
			if c < '0' || c > '9' {
				return false
			}
			n = n*10 + uint64(c-'0')
		}
	}
	s.mu.Lock()
	if n > s.toN {
		s.to, s.toN = reply, n
	}
	s.mu.Unlock()
	return true
}

func (s *stream) peerInbox() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// dest is where this side's frames go: the pinned gateway inbox (edge) or
// the edge's newest reply subject (gateway); "" while unknown.
func (s *stream) dest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to
}

// replySubject is the reply subject of this side's next frame: on the edge
// a new numbered reply subject, on a gateway its inbox.
func (s *stream) replySubject() string {
	if !s.mx.edge {
		return s.inbox
	}
	n := s.replies.Add(1)
	var b strings.Builder
	b.Grow(len(s.inbox) + 21)
	b.WriteString(s.inbox)
	b.WriteByte('.')
	var d [20]byte
	b.Write(strconv.AppendUint(d[:0], n, 10))
	return b.String()
}

// errNoPeer is returned when a frame is to be sent before the peer is known.
var errNoPeer = errors.New("nats: the peer's inbox is not known yet")

// publish sends a frame to the peer with this side's reply subject.
func (s *stream) publish(m *nats.Msg) error {
	m.Subject = s.dest()
	if m.Subject == "" {
		return errNoPeer
	}
	m.Reply = s.replySubject()
	return s.mx.nc.PublishMsg(m)
}

// publishCompact sends a compact (header-less) frame to the peer with this
// side's reply subject; the connection copies b before it returns.
func (s *stream) publishCompact(b []byte) error {
	to := s.dest()
	if to == "" {
		return errNoPeer
	}
	return s.mx.nc.PublishRequest(to, s.replySubject(), b)
}

// sendControl publishes a credit, cancel, probe or error frame to the
// peer, best effort.
func (s *stream) sendControl(kind string, credit int, msg string) {
	if kind == kindCredit && s.compact && credit > 0 && msg == "" {
		var b [16]byte
		_ = s.publishCompact(appendCompactCredit(b[:0], credit))
		return
	}
	h := newFrame(kind, 2)
	if credit > 0 {
		h[hdrCredit] = []string{strconv.Itoa(credit)}
	}
	if msg != "" {
		h[hdrError] = []string{msg}
	}
	_ = s.publish(&nats.Msg{Header: h})
}

// takeCredit consumes one credit if there is one.
func (s *stream) takeCredit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.credit > 0 {
		s.credit--
		return true
	}
	return false
}

func (s *stream) addCredit(n int) {
	s.mu.Lock()
	s.credit += n
	s.mu.Unlock()
}

// Reasons a frame is dropped (the reason label of
// caddy_neo_nats_rejected_frames_total).
const (
	// the reply subject is not the bound peer's (or missing)
	reasonWrongReply = "wrong_reply"
	// the edge got a frame that cannot accept a request before any gateway
	// accepted it
	reasonNotAccepted = "not_accepted"
	// a frame kind that never travels in this direction
	reasonUnexpectedKind = "unexpected_kind"
	// no open stream has the token (logged at debug level: late frames of
	// finished requests are normal)
	reasonUnknownStream = "unknown_stream"
)

// maxRejectLogs is how many dropped frames of one stream are logged; all
// are counted.
const maxRejectLogs = 4

// reject counts a dropped frame and logs it (at most maxRejectLogs per
// stream) with the reply subject the sender claimed, which names its
// connection's inbox prefix.
func (mx *mux) reject(s *stream, m *nats.Msg, kind, reason string) {
	side := sideGateway
	if mx.edge {
		side = sideEdge
	}
	rejectedCounter(side, reason).Inc()
	lvl := zapcore.WarnLevel
	if reason == reasonUnknownStream {
		lvl = zapcore.DebugLevel
	}
	if s != nil && s.rejected.Add(1) > maxRejectLogs {
		return
	}
	ce := mx.logger.Check(lvl, "dropping a nats frame that is not from the request's peer")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("reason", reason),
		zap.String("kind", clip(kind, 32)),
		zap.String("claimed_reply", clip(m.Reply, 256)),
		zap.String("side", side),
	}
	if s != nil {
		fields = append(fields, zap.String("tenant", s.tenant), zap.String("app", s.app), zap.String("subject", s.subject))
		if n := s.rejected.Load(); n == maxRejectLogs {
			fields = append(fields, zap.String("note", "further frames dropped on this request are counted, not logged"))
		}
	}
	ce.Write(fields...)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
