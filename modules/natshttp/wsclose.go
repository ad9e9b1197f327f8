package natshttp

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
)

// WebSocket close codes the edge sends a client whose socket's far side
// ended without a close frame (RFC 6455 section 7.4.1).
const (
	// wsGoingAway: the stage gateway shut down (or its config was
	// replaced and drain_timeout passed).
	wsGoingAway = 1001
	// wsInternalError: the stage gateway (or its NATS connection) died,
	// or the stream failed.
	wsInternalError = 1011
)

// goingAwayMsg is the error frame a stopping gateway sends the edge of each
// WebSocket it still carries; the edge closes the client's socket with 1001.
const goingAwayMsg = "stage gateway going away"

// wsFrames follows the frame boundaries of one direction of a WebSocket's
// byte stream, so that a close frame can be inserted between two frames
// (never inside one), and notes whether a close frame already went by.
type wsFrames struct {
	hdr       [14]byte
	hn, need  int    // header bytes held, and the header's length (0: not known yet)
	left      uint64 // payload bytes of the current frame still to come
	closeSeen bool
}

// feed advances over p. O(1) per frame header byte, O(1) per payload chunk.
func (t *wsFrames) feed(p []byte) {
	for len(p) > 0 {
		if t.left > 0 {
			n := uint64(len(p))
			if n > t.left {
				n = t.left
			}
			t.left -= n
			p = p[n:]
			continue
		}
		t.hdr[t.hn] = p[0]
		t.hn++
		p = p[1:]
		if t.hn == 2 {
			t.need = 2
			switch t.hdr[1] & 0x7f {
			case 126:
				t.need += 2
			case 127:
				t.need += 8
			}
			if t.hdr[1]&0x80 != 0 {
				t.need += 4 // masking key
			}
		}
		if t.hn >= 2 && t.hn == t.need {
			var n uint64
			switch t.hdr[1] & 0x7f {
			case 126:
				n = uint64(binary.BigEndian.Uint16(t.hdr[2:4]))
			case 127:
				n = binary.BigEndian.Uint64(t.hdr[2:10])
			default:
				n = uint64(t.hdr[1] & 0x7f)
			}
			if t.hdr[0]&0x0f == 0x8 {
				t.closeSeen = true
			}
			t.left, t.hn, t.need = n, 0, 0
		}
	}
}

// atBoundary reports whether the stream is between two frames.
func (t *wsFrames) atBoundary() bool { return t.hn == 0 && t.left == 0 }

// closeFrame is an unmasked (server to client) close frame with code and
// reason (at most 123 bytes).
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := make([]byte, 4, 4+len(reason))
	b[0], b[1] = 0x88, byte(2+len(reason))
	binary.BigEndian.PutUint16(b[2:], uint16(code))
	return append(b, reason...)
}

// closeCodeFor is the close code for a socket whose stream ended with err.
func closeCodeFor(err error) (int, string) {
	var pe peerError
	if errors.As(err, &pe) && strings.Contains(pe.msg, goingAwayMsg) {
		return wsGoingAway, goingAwayMsg
	}
	return wsInternalError, "stage gateway unavailable"
}

// watchPeer ends a gateway's socket whose edge fell silent: an edge probes
// an open socket every gateway_check_interval, so nothing from it for the
// gateway's chunk_timeout means its process or connection is gone (NATS
// gives a gateway no other sign while the replica sends nothing). The
// stream's cancel ends the replica's side.
func (c *gatewaySocket) watchPeer(timeout time.Duration) {
	st := c.w.st
	st.heard.Store(time.Now().UnixNano())
	st.keepHeard.Store(true)
	var check func()
	check = func() {
		if c.closed.Load() {
			return
		}
		silent := time.Since(time.Unix(0, st.heard.Load()))
		if silent < timeout {
			c.watch.Store(time.AfterFunc(timeout-silent, check))
			return
		}
		c.w.g.logger.Info("websocket: the edge fell silent, closing the replica's side",
			zap.String("subject", st.subject), zap.Duration("silent", silent))
		st.canceled.Store(true)
		st.abort()
	}
	c.watch.Store(time.AfterFunc(timeout, check))
}

// take returns the rest of the current frame's bytes, reading the next
// frame when none are left: the body's bytes without a copy.
func (b *bodyReader) take() ([]byte, error) {
	for len(b.buf) == 0 {
		if b.err != nil {
			return nil, b.err
		}
		if b.eof {
			return nil, io.EOF
		}
		b.err = b.nextFrame()
	}
	p := b.buf
	b.buf = nil
	return p, nil
}

// WriteTo writes the gateway's bytes to w as their frames arrive (the
// reverse proxy's copy to the client uses it, io.WriterTo): no copy
// buffer per socket in that direction.
func (s *socket) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		var p []byte
		var err error
		if s.pending != nil {
			p, s.pending = s.pending, nil
		} else if s.perr != nil {
			err = s.perr
		} else {
			p, err = s.br.take()
			s.frames.feed(p)
			if err != nil && err != io.EOF && !s.isClosed() {
				code, reason := closeCodeFor(err)
				if r := s.goingAway.Load(); r != nil {
					code, reason = wsGoingAway, *r
				} else {
					s.log.Warn("nats websocket stream failed", zap.Error(err))
				}
				if s.frames.atBoundary() && !s.frames.closeSeen {
					p, s.perr, err = closeFrame(code, reason), err, nil
					s.frames.closeSeen = true
				}
			}
		}
		if len(p) > 0 {
			n, werr := w.Write(p)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// WriteTo writes the edge's bytes to w (the replica's connection) as
// their frames arrive: no copy buffer per socket in that direction.
func (c *gatewaySocket) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		p, err := c.w.br.take()
		if len(p) > 0 {
			n, werr := w.Write(p)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// ReadFrom sends r's bytes (the client's connection) to the gateway as
// they arrive, through a small buffer (a plain TCP connection's WriteTo
// would copy through 32 KiB of its own per socket).
func (s *socket) ReadFrom(r io.Reader) (int64, error) { return readLoop(r, s.Write) }
