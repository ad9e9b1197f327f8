package natshttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// timeoutError answers 504 through the reverse proxy (it is a net.Error whose
// Timeout() is true).
type timeoutError struct{ what string }

func (e timeoutError) Error() string   { return "nats: timed out waiting for " + e.what }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// errPeerGone is returned when the peer canceled or overran its window.
type peerError struct{ msg string }

func (e peerError) Error() string { return "nats: " + e.msg }

// sender publishes the frames of one body stream, waiting for credit.
type sender struct {
	st      *stream
	ctx     context.Context
	timeout time.Duration
	seq     uint64
}

// waitCredit blocks until the peer allows one more frame.
func (s *sender) waitCredit() error {
	var timer *time.Timer
	for !s.st.takeCredit() {
		if timer == nil {
			timer = time.NewTimer(s.timeout)
			defer timer.Stop()
		}
		select {
		case <-s.st.creditCh:
		case <-s.st.cancelCh:
			return peerError{"stream aborted by peer"}
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-timer.C:
			return timeoutError{"flow-control credit"}
		}
	}
	return nil
}

// sendData publishes a data frame (seq ≥ 1) to the peer.
func (s *sender) sendData(data []byte, eof bool, trailer http.Header) error {
	if err := s.waitCredit(); err != nil {
		return err
	}
	s.seq++
	if s.st.compact && len(trailer) == 0 && len(data) <= maxCompactData {
		bp := compactBuffers.Get().(*[]byte)
		b := append(appendCompactData((*bp)[:0], s.seq, eof), data...)
		err := s.st.publishCompact(b)
		*bp = b[:0]
		compactBuffers.Put(bp)
		if err == nil {
			s.st.sent.Store(int64(s.seq))
		}
		return err
	}
	h := newFrame(kindData, 3+len(trailer))
	h[hdrSeq] = []string{strconv.FormatUint(s.seq, 10)}
	if eof {
		h[hdrEOF] = constValue("1")
		putHTTPFields(h, trailer, prefixTrailer)
	}
	err := s.st.publish(&nats.Msg{Header: h, Data: data})
	if err == nil {
		s.st.sent.Store(int64(s.seq))
	}
	return err
}

// maxCompactData is the largest payload sent in a compact data frame: the
// frame is built in a pooled buffer, so a larger chunk (a bulk body's) goes
// in a version 1 frame, which the connection copies once rather than twice.
const maxCompactData = 64 << 10

// compactBuffers hold compact data frames while they are published (the
// connection copies a frame before Publish returns).
var compactBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, compactDataPrefix+smallReadBuffer)
	return &b
}}

// isCompactData reports whether m is a compact data frame.
func isCompactData(m *nats.Msg) bool {
	return len(m.Header) == 0 && len(m.Data) > len(v2Magic) && m.Data[len(v2Magic)] == v2KindData && isV2(0, m.Data)
}

// bodyReader reads a body stream: the inline bytes of the head frame, then
// data frames in sequence, granting credit as frames are consumed.
type bodyReader struct {
	st       *stream
	ctx      context.Context
	timeout  time.Duration
	window   int
	buf      []byte
	next     uint64
	eof      bool
	err      error
	consumed int
	trailer  http.Header
	timer    *time.Timer
	onEOF    func()
	// probe, on the edge, checks that the gateway still serves the request.
	probe *prober
	// request: the body is a request's (on a gateway), whose trailers must
	// not carry fields the edge controls (see forbiddenTrailer)
	request bool
	// closed, when not nil, ends a Read waiting for the next frame: the
	// handler closed the body (gatewayBody.Close)
	closed <-chan struct{}
}

// errBodyClosed: the request body was read after its handler closed it.
var errBodyClosed = errors.New("nats: read on a closed request body")

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.eof {
			return 0, io.EOF
		}
		b.err = b.nextFrame()
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *bodyReader) nextFrame() error {
	if b.consumed >= max(1, b.window/2) {
		b.st.sendControl(kindCredit, b.consumed, "")
		b.consumed = 0
	}
	var timeout <-chan time.Time
	if b.timeout > 0 { // 0: no timeout (a socket, bounded by probes)
		if b.timer == nil {
			b.timer = time.NewTimer(b.timeout)
		} else {
			b.timer.Reset(b.timeout)
		}
		timeout = b.timer.C
	}
	var m *nats.Msg
	for m == nil {
		select {
		case m = <-b.st.ch:
		case <-b.st.cancelCh:
			select {
			case m = <-b.st.ch:
			default:
				if b.st.overflow.Load() {
					return peerError{"peer overran its flow-control window"}
				}
				return peerError{"stream canceled"}
			}
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-b.closed:
			return errBodyClosed
		case <-timeout:
			return timeoutError{"the next body chunk"}
		case <-b.probe.C():
			b.probe.send()
		case a := <-b.st.probeCh:
			if err := b.probe.result(a, int64(b.next), len(b.st.ch)); err != nil {
				// a frame the gateway sent before it answered wins
				select {
				case m = <-b.st.ch:
				default:
					return err
				}
			}
		}
	}
	// a compact data frame is decoded in place; any other through parseFrame
	var (
		f    *frame
		kind = kindData
		seq  uint64
		eof  bool
		data []byte
		err  error
	)
	if isCompactData(m) {
		if seq, eof, data, err = parseCompactData(m.Data); err != nil {
			return err
		}
	} else {
		if f, err = parseFrame(m); err != nil {
			return err
		}
		kind, seq, eof, data = f.kind, f.seq, f.eof, f.data
	}
	switch kind {
	case kindData:
	case kindError:
		return peerError{"peer failed: " + f.errMsg}
	default:
		return fmt.Errorf("%w: unexpected %q frame in a body", ErrBadFrame, kind)
	}
	if seq != b.next {
		return fmt.Errorf("%w: frame %d, want %d (a message was lost)", ErrBadFrame, seq, b.next)
	}
	b.next++
	b.consumed++
	b.buf = data
	if eof {
		b.eof = true
		if f != nil {
			if tr, err := f.fields(prefixTrailer); err == nil {
				for k, vv := range tr {
					if b.trailer != nil && !(b.request && forbiddenTrailer(k)) {
						b.trailer[k] = vv
					}
				}
			}
		}
		if b.onEOF != nil {
			b.onEOF()
		}
		b.probe.stop()
	}
	return nil
}

func (b *bodyReader) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
	b.probe.stop()
}

// readChunk reads up to len(buf) bytes, returning early once a read comes up
// short so that slowly produced streams are forwarded as they arrive.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m < 16<<10 && n > 0 {
			return n, nil
		}
	}
	return n, nil
}

// headSize estimates the encoded size of a header block.
func headSize(h nats.Header) int {
	n := 16
	for k, vv := range h {
		for _, v := range vv {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
