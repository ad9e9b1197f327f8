package neonats

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// mux is one wildcard subscription on <prefix>.* that routes messages to
// per-request streams by the last token, so a request costs no SUB/UNSUB.
type mux struct {
	nc     *nats.Conn
	prefix string
	next   atomic.Uint64
	mu     sync.Mutex
	m      map[string]*stream
	sub    *nats.Subscription // nil while unsubscribed (after close)
	// closing is set by close: the subscription ends with the last stream.
	closing bool
}

func newMux(nc *nats.Conn) (*mux, error) {
	mx := &mux{nc: nc, prefix: nc.NewInbox(), m: make(map[string]*stream)}
	if err := mx.subscribe(); err != nil {
		return nil, err
	}
	return mx, nil
}

// subscribe is called with mu held (or before the mux is shared).
func (mx *mux) subscribe() error {
	sub, err := mx.nc.Subscribe(mx.prefix+".*", mx.deliver)
	if err != nil {
		return err
	}
	// Streams are windowed, so pending stays small; these only guard
	// against a misbehaving peer.
	_ = sub.SetPendingLimits(1<<16, 1<<30)
	mx.sub = sub
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
	}
}

// stream receives the messages of one request.
type stream struct {
	mx    *mux
	token string
	inbox string
	// ch receives every frame except credit frames.
	ch chan *nats.Msg
	// credit counts frames the peer allows us to send; creditCh is signalled
	// when it grows.
	mu       sync.Mutex
	credit   int
	creditCh chan struct{}
	peer     string // the peer's inbox, once known
	peerCh   chan struct{}
	// overflow is set when the peer sent more than its window allowed.
	overflow  atomic.Bool
	canceled  atomic.Bool
	cancelCh  chan struct{}
	closeOnce sync.Once
	cancelFn  func()
	// probeCh receives the answers to this stream's probes (edge side).
	probeCh chan probeAnswer
	// sent is the last frame this side sent on the stream: -1 none, 0 the
	// head (resp), n the data frame n. Probe answers carry it.
	sent atomic.Int64
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

// probeSuffix ends the reply token of a probe: <inbox prefix>.<token>_p.
const probeSuffix = "_p"

// abort wakes everything waiting on the stream.
func (s *stream) abort() {
	s.closeOnce.Do(func() {
		close(s.cancelCh)
		if s.cancelFn != nil {
			s.cancelFn()
		}
	})
}

// open registers a new stream. A request that reaches a closed mux (one
// accepted by an old server just before its reload) subscribes it again
// for as long as it runs.
func (mx *mux) open(window int) (*stream, error) {
	tok := strconv.FormatUint(mx.next.Add(1), 36)
	s := &stream{
		mx: mx, token: tok, inbox: mx.prefix + "." + tok,
		ch:       make(chan *nats.Msg, window+8),
		creditCh: make(chan struct{}, 1),
		peerCh:   make(chan struct{}),
		cancelCh: make(chan struct{}),
		probeCh:  make(chan probeAnswer, 4),
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

func (mx *mux) deliver(m *nats.Msg) {
	tok := m.Subject[len(mx.prefix)+1:]
	isProbeReply := strings.HasSuffix(tok, probeSuffix)
	tok = strings.TrimSuffix(tok, probeSuffix)
	mx.mu.Lock()
	s := mx.m[tok]
	mx.mu.Unlock()
	kind := m.Header.Get(hdrKind)
	if kind == kindProbe && !isProbeReply {
		// a peer asks whether this request is still being served
		if m.Reply != "" {
			if s != nil {
				h := newFrame(kindProbe, 2)
				if n := s.sent.Load(); n >= 0 {
					h[hdrSeq] = []string{strconv.FormatInt(n, 10)}
				}
				_ = mx.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: h})
			} else {
				sendControl(mx.nc, m.Reply, kindError, 0, "request not in progress")
			}
		}
		return
	}
	if s == nil {
		return
	}
	if isProbeReply {
		a := probeAnswer{r: probeAlive, sent: -1}
		switch {
		case kind == kindProbe:
			if n, err := strconv.ParseInt(m.Header.Get(hdrSeq), 10, 64); err == nil && n >= 0 {
				a.sent = n
			}
		case kind == "" && m.Header.Get("Status") == "503":
			a.r = probeGone
		default:
			a.r = probeUnknown
		}
		select {
		case s.probeCh <- a:
		default:
		}
		return
	}
	if in := m.Header.Get(hdrInbox); in != "" {
		s.setPeer(in)
	}
	switch kind {
	case kindCredit:
		if n, err := strconv.Atoi(m.Header.Get(hdrCredit)); err == nil && n > 0 && n <= maxWindow {
			s.mu.Lock()
			s.credit += n
			s.mu.Unlock()
			select {
			case s.creditCh <- struct{}{}:
			default:
			}
		}
		return
	case kindCancel:
		s.canceled.Store(true)
		s.abort()
		return
	}
	select {
	case s.ch <- m:
	default:
		s.overflow.Store(true)
		s.abort()
	}
}

func (s *stream) setPeer(in string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peer == "" && validSubject(in) {
		s.peer = in
		close(s.peerCh)
	}
}

func (s *stream) peerInbox() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
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
