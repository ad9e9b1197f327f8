package natshttp

import (
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/projectneo/caddy-neo/internal/route"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	// A bound for a failing test only: on a loaded machine (CI beside
	// other builds) NATS deliveries can take seconds.
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func rejectedCount(side, reason string) float64 {
	return testutil.ToFloat64(rejectedCounter(side, reason))
}

// TestInboxTokens: every stream's inbox ends in 128 random bits (26 base32
// characters), on both sides; tokens are distinct and unrelated to the
// ones before them (no shared prefix, about half their bits differ).
func TestInboxTokens(t *testing.T) {
	s := startNATS(t, 0)
	nc := connect(t, s.ClientURL())
	for _, edge := range []bool{true, false} {
		mx, err := newMux(nc, edge, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush() // the subscription is at the server before another connection publishes
		seen := map[string]bool{}
		var prev []byte
		minDist := 1 << 30
		for range 20000 {
			st, err := mx.open(streamOpts{window: 1})
			if err != nil {
				t.Fatal(err)
			}
			st.close()
			if st.inbox != mx.prefix+"."+st.token || len(st.token) != tokenChars || strings.Trim(st.token, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
				t.Fatalf("inbox %q token %q", st.inbox, st.token)
			}
			if seen[st.token] {
				t.Fatalf("token %q twice", st.token)
			}
			seen[st.token] = true
			raw, err := tokenEncoding.DecodeString(st.token)
			if err != nil {
				t.Fatal(err)
			}
			if prev != nil {
				d := 0
				for i := range raw {
					d += bits.OnesCount8(raw[i] ^ prev[i])
				}
				minDist = min(minDist, d)
				if raw[0] == prev[0] && raw[1] == prev[1] && raw[2] == prev[2] {
					t.Fatalf("consecutive tokens share 24 bits: %x %x", prev, raw)
				}
			}
			prev = raw
		}
		// 128 random bits: two consecutive tokens differ in 64 ± 5.7 bits;
		// below 24 over 20000 pairs is a broken generator
		if minDist < 24 {
			t.Fatalf("edge %v: consecutive tokens differ in only %d bits", edge, minDist)
		}
	}
}

// frameMsg builds a version 1 frame of kind to subject with reply subject
// reply and the given extra fields.
func frameMsg(subject, reply, kind string, fields ...string) *nats.Msg {
	h := newFrame(kind, 2+len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		h[fields[i]] = []string{fields[i+1]}
	}
	return &nats.Msg{Subject: subject, Reply: reply, Header: h}
}

// respV2 is a version 2 resp frame (status 200, body b).
func respV2(subject, reply, b string) *nats.Msg {
	d := appendV2Start(nil, v2KindResp)
	d = appendV2Ctl(d, 's', "200")
	return &nats.Msg{Subject: subject, Reply: reply, Data: append(append(d, v2End), b...)}
}

// TestEdgeBinding: an edge stream is bound to the gateway whose credit or
// resp frame comes first (its reply subject); frames from anyone else —
// another reply subject, none, a frame that names an inbox in its fields —
// are dropped, counted and logged with the claimed reply, whatever their
// kind; the edge sends its frames only to the bound gateway, each with a
// reply subject of its own; the honest gateway's frames get through.
func TestEdgeBinding(t *testing.T) {
	s := startNATS(t, 0)
	edgeNC := connect(t, s.ClientURL())
	gwNC := connect(t, s.ClientURL())
	evilNC := connect(t, s.ClientURL())
	core, logs := observer.New(zapcore.WarnLevel)
	mx, err := newMux(edgeNC, true, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	_ = edgeNC.Flush() // the subscription is at the server before another connection publishes
	st, err := mx.open(streamOpts{window: 8, tenant: "globex", app: "shop", subject: route.Subject{Stage: "prod", Zone: "az-a", Tenant: "globex", App: "shop"}.Build()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	const gwIn, evilIn = "_GW.prod.honest.TOKEN", "_GW.dev.evil.TOKEN"
	gwSub, _ := gwNC.SubscribeSync(gwIn)
	evilSub, _ := evilNC.SubscribeSync("_GW.dev.>")
	_ = gwNC.Flush()
	_ = evilNC.Flush()

	send := func(nc *nats.Conn, m *nats.Msg) {
		t.Helper()
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	wrong0 := rejectedCount(sideEdge, reasonWrongReply)
	notAcc0 := rejectedCount(sideEdge, reasonNotAccepted)

	// before any gateway accepted: only credit or resp can accept
	send(evilNC, frameMsg(st.inbox, evilIn, kindData, hdrSeq, "1"))
	send(evilNC, frameMsg(st.inbox, "", kindCredit, hdrCredit, "8", hdrInbox, evilIn))
	waitFor(t, "two early frames dropped", func() bool {
		return rejectedCount(sideEdge, reasonNotAccepted) >= notAcc0+1 && rejectedCount(sideEdge, reasonWrongReply) >= wrong0+1
	})
	if st.peerInbox() != "" {
		t.Fatal("bound to a frame without a reply subject")
	}

	// the gateway accepts
	send(gwNC, frameMsg(st.inbox, gwIn, kindCredit, hdrCredit, "1", hdrInbox, gwIn))
	select {
	case <-st.peerCh:
	case <-time.After(30 * time.Second):
		t.Fatal("not bound to the gateway")
	}
	if st.peerInbox() != gwIn || st.dest() != gwIn {
		t.Fatalf("bound to %q", st.peerInbox())
	}
	waitFor(t, "the gateway's credit", func() bool { return st.takeCredit() })
	st.addCredit(1)

	// the attacker, with or without a reply subject, every kind
	evil := []*nats.Msg{
		frameMsg(st.inbox, evilIn, kindCredit, hdrCredit, "100", hdrInbox, evilIn),
		frameMsg(st.inbox, evilIn, kindData, hdrSeq, "1", hdrEOF, "1"),
		frameMsg(st.inbox, evilIn, kindCancel),
		frameMsg(st.inbox, evilIn, kindProbe, hdrSeq, "0"),
		frameMsg(st.inbox, evilIn, kindError, hdrError, errNotInProgress),
		respV2(st.inbox, evilIn, "injected"),
		respV2(st.inbox, "", "injected"),
		respV2(st.inbox, gwIn+".x", "injected"),
		frameMsg(st.inbox+".7", evilIn, kindCredit, hdrCredit, "5"),
		frameMsg(st.inbox, "", kindCancel),
	}
	for _, m := range evil {
		send(evilNC, m)
	}
	waitFor(t, "the attacker's frames dropped", func() bool {
		return rejectedCount(sideEdge, reasonWrongReply) >= wrong0+1+float64(len(evil))
	})
	if len(st.ch) != 0 || len(st.probeCh) != 0 || st.canceled.Load() {
		t.Fatalf("an attacker's frame got through: %d frames, %d probe answers, canceled %v", len(st.ch), len(st.probeCh), st.canceled.Load())
	}
	st.mu.Lock()
	credit := st.credit
	st.mu.Unlock()
	if credit != 1 {
		t.Fatalf("credit %d, want 1: the attacker's credit counted", credit)
	}
	// logged, at most maxRejectLogs per stream, naming the claimed reply
	var named int
	for _, e := range logs.All() {
		f := e.ContextMap()
		if f["claimed_reply"] == evilIn && f["tenant"] == "globex" && f["subject"] == (route.Subject{Stage: "prod", Zone: "az-a", Tenant: "globex", App: "shop"}.Build()) && f["reason"] == reasonWrongReply {
			named++
		}
	}
	if named == 0 || logs.Len() > maxRejectLogs {
		t.Fatalf("%d log lines (%d naming %s), want 1 to %d:\n%v", logs.Len(), named, evilIn, maxRejectLogs, logs.All())
	}

	// the edge's frames go to the gateway only, each with a reply subject
	// of its own under the stream's inbox
	snd := &sender{st: st, ctx: t.Context(), timeout: time.Second}
	if err := snd.sendData([]byte("card=4111"), false, nil); err != nil {
		t.Fatal(err)
	}
	st.sendControl(kindCredit, 3, "")
	st.sendControl(kindProbe, 0, "")
	st.sendControl(kindCancel, 0, "bye")
	replies := map[string]bool{}
	for i := range 4 {
		m, err := gwSub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !strings.HasPrefix(m.Reply, st.inbox+".") || replies[m.Reply] {
			t.Fatalf("frame %d reply subject %q", i, m.Reply)
		}
		replies[m.Reply] = true
	}
	// nothing went to the attacker: its first message is a marker the edge
	// connection sends after those frames
	_ = edgeNC.Publish(evilIn, []byte("marker"))
	if m, err := evilSub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "marker" {
		t.Fatalf("the attacker got %v %v", m, err)
	}

	// the gateway's own frames get through
	send(gwNC, respV2(st.inbox+".2", gwIn, "hello"))
	send(gwNC, frameMsg(st.inbox+".3", gwIn, kindProbe, hdrSeq, "0"))
	select {
	case m := <-st.ch:
		if !strings.HasSuffix(string(m.Data), "hello") {
			t.Fatalf("got %q", m.Data)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway's resp frame did not arrive")
	}
	select {
	case a := <-st.probeCh:
		if a.r != probeAlive || a.sent != 0 {
			t.Fatalf("probe answer %+v", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway's probe answer did not arrive")
	}
	// a gateway that is gone: no responders (from the server, no reply)
	mx.deliver(&nats.Msg{Subject: st.inbox + ".4", Header: nats.Header{"Status": {"503"}}})
	if a := <-st.probeCh; a.r != probeGone {
		t.Fatalf("no responders after binding: %+v", a)
	}
}

// TestGatewayBinding: a gateway stream whose head announced binding takes
// frames only from the edge's inbox or its numbered reply subjects, sends
// to the newest of these, and answers a probe only there: a probe with any
// other reply subject is not answered (no reflector). An unbound stream
// (an edge of an earlier release) takes frames as before.
func TestGatewayBinding(t *testing.T) {
	s := startNATS(t, 0)
	gwNC := connect(t, s.ClientURL())
	edgeNC := connect(t, s.ClientURL())
	mx, err := newMux(gwNC, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = gwNC.Flush() // the subscription is at the server before another connection publishes
	const edgeIn = "_EDGE.abc.TOKEN"
	st, err := mx.open(streamOpts{window: 8, peer: edgeIn, bind: true, tenant: "globex"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	all := make(chan *nats.Msg, 256)
	if _, err := edgeNC.ChanSubscribe(">", all); err != nil {
		t.Fatal(err)
	}
	_ = edgeNC.Flush()
	wrong0 := rejectedCount(sideGateway, reasonWrongReply)
	for _, reply := range []string{"", "_EDGE.abc.TOKEN2", "_EDGE.abc.TOKEN.01", "_EDGE.abc.TOKEN.1x", "_EDGE.abc.TOKEN.", "_EDGE.abc.TOKEN.1.2", "_EDGE.abc", "_EVIL.target", "_EDGE.abc.TOKEN.123456789012345678901"} {
		_ = edgeNC.PublishMsg(frameMsg(st.inbox, reply, kindData, hdrSeq, "1"))
		_ = edgeNC.PublishMsg(frameMsg(st.inbox, reply, kindCredit, hdrCredit, "9"))
		_ = edgeNC.PublishMsg(frameMsg(st.inbox, reply, kindCancel))
		_ = edgeNC.PublishMsg(frameMsg(st.inbox, reply, kindProbe))
	}
	// (at least: the counter is the package's, shared with other tests'
	// gateways)
	waitFor(t, "36 frames dropped", func() bool { return rejectedCount(sideGateway, reasonWrongReply) >= wrong0+36 })
	if len(st.ch) != 0 || st.canceled.Load() || st.takeCredit() || st.dest() != edgeIn {
		t.Fatalf("a frame not from the edge got through: %d frames, canceled %v, dest %q", len(st.ch), st.canceled.Load(), st.dest())
	}

	// the edge's frames
	_ = edgeNC.PublishMsg(frameMsg(st.inbox, edgeIn+".5", kindData, hdrSeq, "1"))
	_ = edgeNC.PublishMsg(frameMsg(st.inbox, edgeIn+".4", kindCredit, hdrCredit, "2"))
	_ = edgeNC.PublishMsg(frameMsg(st.inbox, edgeIn+".6", kindProbe))
	select {
	case <-st.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the edge's data frame did not arrive")
	}
	// the probe is answered to its own reply subject, with the stream's
	// inbox as reply; the rejected probes before it were answered nowhere
	for m := range all {
		if m.Subject == st.inbox {
			continue // the frames above
		}
		if m.Subject != edgeIn+".6" || m.Reply != st.inbox || m.Header.Get(hdrKind) != kindProbe {
			t.Fatalf("the gateway sent %s (reply %q, kind %q)", m.Subject, m.Reply, m.Header.Get(hdrKind))
		}
		break
	}
	waitFor(t, "the edge's credit", func() bool { return st.takeCredit() })
	if st.dest() != edgeIn+".6" {
		t.Fatalf("sends to %q, want the newest reply subject", st.dest())
	}
	// an older reply subject is taken, the destination stays
	_ = edgeNC.PublishMsg(frameMsg(st.inbox, edgeIn+".2", kindData, hdrSeq, "2"))
	<-st.ch
	if st.dest() != edgeIn+".6" {
		t.Fatalf("went back to %q", st.dest())
	}

	// a stream the gateway no longer has: the probe gets "not in
	// progress", named after the inbox it asked
	_ = edgeNC.PublishMsg(frameMsg(mx.prefix+".GONE", edgeIn+".9", kindProbe))
	for m := range all {
		if m.Subject != edgeIn+".9" {
			continue
		}
		if m.Reply != mx.prefix+".GONE" || m.Header.Get(hdrKind) != kindError || m.Header.Get(hdrError) != errNotInProgress {
			t.Fatalf("unknown stream answered %+v", m)
		}
		break
	}

	// no responders to a frame the gateway sent: the edge is gone
	mx.deliver(&nats.Msg{Subject: st.inbox, Header: nats.Header{"Status": {"503"}}})
	if !st.canceled.Load() {
		t.Fatal("no responders did not cancel the request")
	}

	// unbound: an edge of an earlier release
	old, _ := mx.open(streamOpts{window: 8, peer: "_EDGE.old.1"})
	defer old.close()
	_ = edgeNC.PublishMsg(frameMsg(old.inbox, "", kindData, hdrSeq, "1"))
	_ = edgeNC.PublishMsg(frameMsg(old.inbox, "_EDGE.old.1_p", kindProbe))
	select {
	case <-old.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("an unbound stream refused a frame")
	}
	for m := range all {
		if m.Subject == "_EDGE.old.1_p" {
			break
		}
	}
}

// TestEdgeNeverAnswersProbes: a probe frame sent to an edge stream, by its
// own gateway or anyone, makes the edge publish nothing (it is taken as an
// answer to the edge's own probe, or dropped): the edge cannot be used to
// publish elsewhere.
func TestEdgeNeverAnswersProbes(t *testing.T) {
	s := startNATS(t, 0)
	edgeNC := connect(t, s.ClientURL())
	gwNC := connect(t, s.ClientURL())
	mx, err := newMux(edgeNC, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = edgeNC.Flush() // the subscription is at the server before another connection publishes
	st, _ := mx.open(streamOpts{window: 8})
	defer st.close()
	const gwIn = "_GW.prod.x.TOKEN"
	all := make(chan *nats.Msg, 256)
	if _, err := gwNC.ChanSubscribe("_GW.>", all); err != nil {
		t.Fatal(err)
	}
	_ = gwNC.Flush()
	_ = gwNC.PublishMsg(frameMsg(st.inbox, gwIn, kindCredit, hdrCredit, "1"))
	<-st.peerCh
	for _, reply := range []string{gwIn, "_GW.prod.victim.TOKEN", ""} {
		_ = gwNC.PublishMsg(frameMsg(st.inbox, reply, kindProbe, hdrSeq, "1"))
	}
	// unknown stream
	_ = gwNC.PublishMsg(frameMsg(mx.prefix+".NOPE", "_GW.prod.victim.TOKEN", kindProbe))
	waitFor(t, "the probe answer", func() bool { return len(st.probeCh) == 1 })
	_ = edgeNC.Publish("_GW.marker", nil)
	if m := <-all; m.Subject != "_GW.marker" {
		t.Fatalf("the edge published to %s", m.Subject)
	}
}
