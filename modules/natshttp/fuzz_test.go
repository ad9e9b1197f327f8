package natshttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// watchdog fails the test with every goroutine's stack if it still runs
// after d.
func watchdog(t *testing.T, d time.Duration) {
	tm := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		panic(fmt.Sprintf("%s still running after %v:\n%s", t.Name(), d, buf[:n]))
	})
	t.Cleanup(func() { tm.Stop() })
}

// streamState is what a delivered frame can change on a stream.
type streamState struct {
	ch, probes, credit int
	canceled           bool
	peer, to           string
}

func stateOf(s *stream) streamState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return streamState{ch: len(s.ch), probes: len(s.probeCh), credit: s.credit, canceled: s.canceled.Load(), peer: s.peer, to: s.to}
}

// fromPeerReply reports whether reply is s's peer's (for a gateway stream:
// its inbox or a numbered reply subject under it), without changing s.
func fromPeerReply(s *stream, reply string) bool {
	peer := s.peer
	if peer == "" {
		return false
	}
	if !s.mx.edge && len(reply) > len(peer)+1 && reply[:len(peer)+1] == peer+"." {
		rest := reply[len(peer)+1:]
		if rest[0] == '0' || len(rest) > 19 {
			return false
		}
		_, err := strconv.ParseUint(rest, 10, 64)
		return err == nil
	}
	return reply == peer
}

// FuzzMuxDeliver feeds arbitrary messages — any subject under the inbox
// prefix, any header block and payload, any reply subject — to an edge's
// and a gateway's mux with open streams, as anyone allowed to publish to
// the inboxes could send them. The mux must not panic or block; a message
// changes no stream but the one its subject names; a bound stream is
// changed only by its peer's frames (or NATS "no responders"); an edge
// stream binds only to the reply subject of a credit or resp frame; the
// edge's mux publishes nothing, a gateway's only probe answers.
func FuzzMuxDeliver(f *testing.F) {
	f.Add(true, uint8(0), "", "NATS/1.0\r\nNeo-Nats-Kind: probe\r\nNeo-Nats-Seq: 3\r\n\r\n", uint8(0), "", []byte{})
	f.Add(true, uint8(1), "", "NATS/1.0\r\nNeo-Nats-Kind: credit\r\nNeo-Nats-Credit: 5\r\nNeo-Nats-Inbox: _GW.a.b\r\n\r\n", uint8(2), "_GW.evil.x", []byte{})
	f.Add(true, uint8(0), "", "NATS/1.0 503\r\n\r\n", uint8(1), "", []byte{})
	f.Add(true, uint8(1), "", "", uint8(2), "_GW.evil.x", []byte("NEO\x02r\x00body"))
	f.Add(false, uint8(0), "", "NATS/1.0\r\nNeo-Nats-Kind: probe\r\n\r\n", uint8(0), "7", []byte{})
	f.Add(false, uint8(2), "NOPE", "NATS/1.0\r\nNeo-Nats-Kind: probe\r\n\r\n", uint8(2), "_EVIL.reflect", []byte{})
	f.Add(false, uint8(3), "x", "NATS/1.0\r\nNeo-Nats-Kind: data\r\nNeo-Nats-Seq: 1\r\n\r\n", uint8(3), "", []byte("x"))
	f.Add(false, uint8(1), "", "NATS/1.0\r\nNeo-Nats-Kind: cancel\r\n\r\n", uint8(1), "", []byte{})
	s := startNATS(f, 0)
	edgeNC := connect(f, s.ClientURL())
	gwNC := connect(f, s.ClientURL())
	edgeMx, err := newMux(edgeNC, true, nil)
	if err != nil {
		f.Fatal(err)
	}
	_ = edgeNC.Flush() // the subscription is at the server before another connection publishes
	gwMx, err := newMux(gwNC, false, nil)
	if err != nil {
		f.Fatal(err)
	}
	_ = gwNC.Flush() // the subscription is at the server before another connection publishes
	f.Fuzz(func(t *testing.T, edge bool, tokSel uint8, tok, hdr string, replySel uint8, reply string, data []byte) {
		h, err := nats.DecodeHeadersMsg([]byte(hdr))
		if err != nil {
			h = nil
		}
		mx, nc := gwMx, gwNC
		if edge {
			mx, nc = edgeMx, edgeNC
		}
		// A bound to its peer, U unbound (edge: no gateway yet; gateway:
		// an earlier release's edge), V bound to another peer
		var a, u, v *stream
		if edge {
			a, _ = mx.open(streamOpts{window: 2})
			a.pin("_GW.p.A")
			u, _ = mx.open(streamOpts{window: 2})
			v, _ = mx.open(streamOpts{window: 2})
			v.pin("_GW.p.V")
		} else {
			a, _ = mx.open(streamOpts{window: 2, peer: "_EDGE.e.A", bind: true})
			u, _ = mx.open(streamOpts{window: 2, peer: "_EDGE.e.U"})
			v, _ = mx.open(streamOpts{window: 2, peer: "_EDGE.e.V", bind: true})
		}
		defer a.close()
		defer u.close()
		defer v.close()
		streams := []*stream{a, u, v}
		var target *stream
		subject := mx.prefix + "." + tok
		switch tokSel % 4 {
		case 0:
			target, subject = a, a.inbox
		case 1:
			target, subject = u, u.inbox
		case 3:
			target, subject = v, v.inbox+"."+tok
		}
		switch replySel % 4 {
		case 0:
			if target != nil {
				reply = target.peer + reply // the peer's inbox, maybe with a suffix
			}
		case 1:
			reply = ""
		case 3:
			reply = v.peer
		}
		before := make([]streamState, len(streams))
		for i, s := range streams {
			before[i] = stateOf(s)
		}
		out := nc.Stats().OutMsgs
		m := &nats.Msg{Subject: subject, Reply: reply, Header: h, Data: data}
		kind := msgKind(m)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 3 {
				mx.deliver(m)
			}
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("deliver blocked")
		}
		noResponders := kind == kindNoResponders && reply == ""
		for i, s := range streams {
			after := stateOf(s)
			if s != target {
				if after != before[i] {
					t.Fatalf("a message to %q changed another stream: %+v -> %+v", subject, before[i], after)
				}
				continue
			}
			changed := after != before[i]
			if edge && s == u {
				if after.peer != "" && (after.peer != reply || (kind != kindCredit && kind != kindResp)) {
					t.Fatalf("an edge stream bound to %q by a %q frame with reply %q", after.peer, kind, reply)
				}
				continue
			}
			if s.bind && changed && !noResponders && !fromPeerReply(s, reply) {
				t.Fatalf("a %q frame with reply %q changed a stream bound to %q: %+v -> %+v", kind, reply, s.peer, before[i], after)
			}
			if after.peer != before[i].peer {
				t.Fatalf("peer changed from %q to %q", before[i].peer, after.peer)
			}
		}
		sent := nc.Stats().OutMsgs - out
		if edge && sent != 0 {
			t.Fatalf("the edge's mux published %d messages", sent)
		}
		if !edge && sent != 0 && (kind != kindProbe || reply == "" || (target != nil && target.bind && !fromPeerReply(target, reply))) {
			t.Fatalf("the gateway's mux published %d messages for a %q frame with reply %q", sent, kind, reply)
		}
	})
}

// fuzzFrame decodes one frame of a FuzzStream input: p[0] says who sends
// it (reply subject) and its kind, p[1] its sequence number, p[2] the eof
// flag and a credit, p[3] the length of the data that follows.
func fuzzFrame(p []byte, subject, peerReply string) (m *nats.Msg, fromPeer bool, rest []byte) {
	if len(p) < 4 {
		return nil, false, nil
	}
	sel, seq, flags, n := p[0], p[1], p[2], int(p[3]%32)
	p = p[4:]
	n = min(n, len(p))
	data, rest := p[:n:n], p[n:]
	var reply string
	switch sel & 3 {
	case 0:
		reply, fromPeer = peerReply, true
	case 1:
		reply = ""
	case 2:
		reply = "_GW.evil.TOKEN"
	case 3:
		reply = peerReply + "x"
	}
	h := nats.Header{}
	switch (sel >> 2) & 7 {
	case 0, 1:
		if flags&2 != 0 {
			// a compact data frame (version 3), whose flags byte may be
			// anything
			b := appendUvarint(appendV2Start(nil, v2KindData), uint64(seq))
			b = append(b, flags>>2&3)
			return &nats.Msg{Subject: subject, Reply: reply, Data: append(b, data...)}, fromPeer, rest
		}
		h[hdrKind] = []string{kindData}
		h[hdrSeq] = []string{strconv.Itoa(int(seq))}
		if flags&1 != 0 {
			h[hdrEOF] = []string{"1"}
			h["T-X-Ok"] = []string{"1"}
			h["T-Neo-Tenant"] = []string{"evil"}
			h["T-Host"] = []string{"evil"}
			h["T-X-Forwarded-For"] = []string{"6.6.6.6"}
		}
	case 2:
		if flags&1 != 0 {
			// a compact credit frame (version 3)
			return &nats.Msg{Subject: subject, Reply: reply, Data: appendCompactCredit(nil, int(flags>>1))}, fromPeer, rest
		}
		h[hdrKind] = []string{kindCredit}
		h[hdrCredit] = []string{strconv.Itoa(int(flags >> 1))}
	case 3:
		h[hdrKind] = []string{kindCancel}
	case 4:
		h[hdrKind] = []string{kindError}
		if flags&1 != 0 {
			h[hdrError] = []string{errNotInProgress}
		}
	case 5:
		h[hdrKind] = []string{kindProbe}
		h[hdrSeq] = []string{strconv.Itoa(int(seq))}
	case 6:
		// a version 2 resp frame
		b := appendV2Ctl(appendV2Start(nil, v2KindResp), 's', "200")
		return &nats.Msg{Subject: subject, Reply: reply, Data: append(append(b, v2End), data...)}, fromPeer, rest
	case 7:
		h = nats.Header{"Status": {"503"}}
		data = nil
	}
	return &nats.Msg{Subject: subject, Reply: reply, Header: h, Data: data}, fromPeer, rest
}

// FuzzStream runs a live stream's state machine — the mux binding it, the
// body reader granting credit and checking sequence numbers, ends and
// trailers — against an arbitrary sequence of frames from its peer and
// from others, on the edge (a response body) and on a gateway (a request
// body): no panic, no hang (a reader always ends), no byte or trailer from
// anyone but the peer, in sequence, no request trailer the edge controls on
// a gateway, and another stream of the same mux never changes.
func FuzzStream(f *testing.F) {
	f.Add(true, []byte{0, 1, 0, 3, 'a', 'b', 'c', 2, 2, 0, 4, 'E', 'V', 'I', 'L', 0, 2, 1, 1, 'd'})
	f.Add(false, []byte{0, 1, 0, 2, 'h', 'i', 8, 0, 6, 0, 24, 0, 0, 1, 'x', 0, 2, 1, 0})
	f.Add(true, []byte{28, 0, 0, 0, 0, 1, 0, 0, 12, 0, 0, 0})
	f.Add(false, []byte{20, 0, 0, 0, 0, 1, 1, 0})
	s := startNATS(f, 0)
	edgeNC := connect(f, s.ClientURL())
	gwNC := connect(f, s.ClientURL())
	edgeMx, err := newMux(edgeNC, true, nil)
	if err != nil {
		f.Fatal(err)
	}
	_ = edgeNC.Flush() // the subscription is at the server before another connection publishes
	gwMx, err := newMux(gwNC, false, nil)
	if err != nil {
		f.Fatal(err)
	}
	_ = gwNC.Flush() // the subscription is at the server before another connection publishes
	f.Fuzz(func(t *testing.T, edge bool, input []byte) {
		watchdog(t, 10*time.Second)
		var st, victim *stream
		var peerReply string
		if edge {
			st, _ = edgeMx.open(streamOpts{window: 4})
			st.pin("_GW.p.A")
			victim, _ = edgeMx.open(streamOpts{window: 4})
			victim.pin("_GW.p.V")
			peerReply = "_GW.p.A"
		} else {
			st, _ = gwMx.open(streamOpts{window: 4, peer: "_EDGE.e.A", bind: true})
			victim, _ = gwMx.open(streamOpts{window: 4, peer: "_EDGE.e.V", bind: true})
			peerReply = "_EDGE.e.A.1"
		}
		defer st.close()
		defer victim.close()
		st.addCredit(4)
		victimBefore := stateOf(victim)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		trailer := http.Header{}
		br := &bodyReader{st: st, ctx: ctx, timeout: 100 * time.Millisecond, window: 4, next: 1, trailer: trailer, request: !edge}
		type result struct {
			got []byte
			err error
		}
		res := make(chan result, 1)
		go func() {
			got, err := io.ReadAll(br)
			br.stop()
			res <- result{got, err}
		}()
		// what the peer's frames could at most make the reader return: its
		// data frames' bytes in sequence, up to the first frame out of order
		var want []byte
		next, stopped := 1, false
		mx := gwMx
		if edge {
			mx = edgeMx
		}
		for p, n := input, 0; len(p) > 0 && n < 256; n++ {
			m, fromPeer, rest := fuzzFrame(p, st.inbox, peerReply)
			if m == nil {
				break
			}
			p = rest
			mx.deliver(m)
			// the same frame, to the other stream (except NATS "no
			// responders", which is the server's word on that stream)
			if msgKind(m) != kindNoResponders {
				mv := *m
				mv.Subject = victim.inbox
				mx.deliver(&mv)
			}
			if !fromPeer || stopped {
				continue
			}
			switch msgKind(m) {
			case kindData:
				fr, err := parseFrame(m)
				if err != nil || fr.seq != uint64(next) {
					stopped = true
					continue
				}
				want = append(want, fr.data...)
				next++
				if fr.eof {
					stopped = true
				}
			case kindCredit, kindProbe, kindCancel:
				// a reader that was canceled may still take the frames
				// queued before it noticed: want is what it may read at most
			case kindError:
				// on the edge an answer to a probe, or the end; a gateway
				// drops it
				if edge && m.Header.Get(hdrError) != errNotInProgress {
					stopped = true
				}
			default:
				// a resp frame or a "no responders" with a reply subject:
				// out of place in a body on the edge, dropped on a gateway
				if edge {
					stopped = true
				}
			}
		}
		// the peer ends it, if nothing did
		mx.deliver(&nats.Msg{Subject: st.inbox, Reply: peerReply, Header: nats.Header{hdrKind: {kindCancel}}})
		var r result
		select {
		case r = <-res:
		case <-time.After(30 * time.Second):
			t.Fatal("the body reader hangs")
		}
		if !bytes.HasPrefix(want, r.got) {
			t.Fatalf("read %q, want a prefix of the peer's data %q", r.got, want)
		}
		if r.err != nil && !errors.Is(r.err, ErrBadFrame) {
			var pe peerError
			var te timeoutError
			if !errors.As(r.err, &pe) && !errors.As(r.err, &te) && !errors.Is(r.err, context.Canceled) {
				t.Fatalf("unexpected error %T %v", r.err, r.err)
			}
		}
		for k := range trailer {
			if !edge && forbiddenTrailer(k) {
				t.Fatalf("request trailer %q reached the gateway's request", k)
			}
		}
		if after := stateOf(victim); after != victimBefore {
			t.Fatalf("another stream changed: %+v -> %+v", victimBefore, after)
		}
	})
}
