package natshttp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"

	"github.com/projectneo/caddy-neo/internal/route"
	"github.com/projectneo/caddy-neo/modules/echo"
	"github.com/projectneo/caddy-neo/modules/natsconn"
)

// forged are the frames a hostile peer sends to an edge stream's inbox to
// take over a request: a credit naming its inbox (to be sent the request
// body), a response head in both versions (to answer it), body, probe,
// cancel and error frames; each with the attacker's reply subject and with
// none.
func forged(to, evilIn string) []*nats.Msg {
	var out []*nats.Msg
	for _, reply := range []string{evilIn, ""} {
		out = append(out,
			frameMsg(to, reply, kindCredit, hdrCredit, "64", hdrInbox, evilIn),
			respV2(to, reply, "injected"),
			frameMsg(to, reply, kindResp, hdrStatus, "200", hdrEOF, "1", hdrInbox, evilIn),
			frameMsg(to, reply, kindData, hdrSeq, "1", hdrEOF, "1"),
			frameMsg(to, reply, kindData, hdrSeq, "2"),
			frameMsg(to, reply, kindProbe, hdrSeq, "0"),
			frameMsg(to, reply, kindCancel),
			frameMsg(to, reply, kindError, hdrError, "evil"),
		)
	}
	return out
}

// activeConn is the running config's default NATS connection (the edge's
// and the gateways' in these topologies).
func activeConn(t *testing.T) *nats.Conn {
	t.Helper()
	app, err := caddy.ActiveContext().App("neo_nats")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := app.(*natsconn.App).Conn("")
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// TestForgedFramesDropped runs requests through the in-process edge and a
// stage gateway while an attacker who learned the request's edge inbox (a
// wiretap on the request subjects) and may publish to it sends forged
// frames once the gateway has accepted: during a streamed upload (to be
// sent the body, or to answer in place of the gateway) and during a
// streamed response (to add bytes to it). Every forged frame is dropped and
// counted; the requests complete with the right bytes; nothing reaches the
// attacker's inbox. (Before streams were bound, the forged response head
// answered the upload and the forged data frames entered the response.)
func TestForgedFramesDropped(t *testing.T) {
	s := startNATS(t, 0)
	tp := newTopo(t, s)
	tp.gateways = []map[string]any{gw("az-a")}
	load(t, tp)
	tap := connect(t, s.ClientURL())
	heads := make(chan *nats.Msg, 16)
	if _, err := tap.ChanSubscribe(route.All, heads); err != nil {
		t.Fatal(err)
	}
	// frames of every request (the gateway's to the edge's inbox, the edge's
	// to the gateway's): they show when the gateway has accepted
	frames := make(chan *nats.Msg, 4096)
	if _, err := tap.ChanSubscribe("_INBOX.>", frames); err != nil {
		t.Fatal(err)
	}
	_ = tap.Flush()
	evil := connect(t, s.ClientURL())
	const evilIn = "_GW.dev.evil.TOKEN"
	evilSub, err := evil.SubscribeSync("_GW.dev.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = evil.Flush()
	attack := func(t *testing.T, to string) {
		t.Helper()
		before := rejectedCount(sideEdge, reasonWrongReply)
		msgs := forged(to, evilIn)
		for _, m := range msgs {
			if err := evil.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the forged frames dropped", func() bool {
			return rejectedCount(sideEdge, reasonWrongReply) >= before+float64(len(msgs))
		})
	}
	// waitAccepted returns the edge inbox of the next request once a frame
	// shows that a gateway accepted it (the edge's first frame to the
	// gateway, or the gateway's first frame to the edge, per accepted)
	waitAccepted := func(t *testing.T, accepted func(m *nats.Msg, inbox string) bool) string {
		t.Helper()
		var inbox string
		select {
		case h := <-heads:
			inbox = h.Reply
		case <-time.After(30 * time.Second):
			t.Fatal("no request head")
		}
		for {
			select {
			case m := <-frames:
				if accepted(m, inbox) {
					return inbox
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the gateway never accepted the request")
			}
		}
	}
	noneToAttacker := func(t *testing.T) {
		t.Helper()
		// a marker from the connection the edge and gateway publish on:
		// anything they sent the attacker before would arrive first
		_ = activeConn(t).Publish(evilIn, []byte("marker"))
		if m, err := evilSub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "marker" {
			t.Fatalf("the attacker's inbox got %v (%v)", m, err)
		}
	}

	t.Run("upload", func(t *testing.T) {
		part1 := bytes.Repeat([]byte("a"), 200<<10)
		part2 := []byte("card=4111111111111111&cvv=123")
		pr, pw := io.Pipe()
		type result struct {
			code int
			body []byte
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := http.Post(tp.url("/orders/upload"), "application/octet-stream", pr)
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			res <- result{resp.StatusCode, b, err}
		}()
		if _, err := pw.Write(part1); err != nil {
			t.Fatal(err)
		}
		inbox := waitAccepted(t, func(m *nats.Msg, inbox string) bool {
			return strings.HasPrefix(m.Reply, inbox+".") && m.Header.Get(hdrKind) == kindData
		})
		attack(t, inbox)
		if _, err := pw.Write(part2); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		r := <-res
		if r.err != nil || r.code != 200 {
			t.Fatalf("%d %q %v", r.code, r.body, r.err)
		}
		var rep echo.Report
		if err := json.Unmarshal(r.body, &rep); err != nil {
			t.Fatalf("not the replica's answer: %q", r.body)
		}
		if want := sha(append(part1, part2...)); rep.BodySHA256 != want || rep.BodyLength != int64(len(part1)+len(part2)) {
			t.Fatalf("the replica got %d bytes (sha %s), want %d (%s)", rep.BodyLength, rep.BodySHA256, len(part1)+len(part2), want)
		}
		noneToAttacker(t)
	})

	t.Run("streamed response", func(t *testing.T) {
		req, _ := http.NewRequest("GET", tp.url("/orders/events"), nil)
		req.Header.Set("Echo-Events", "4")
		req.Header.Set("Echo-Interval", "150ms")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		inbox := waitAccepted(t, func(m *nats.Msg, inbox string) bool {
			return m.Subject == inbox || strings.HasPrefix(m.Subject, inbox+".")
		})
		attack(t, inbox)
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || strings.Count(string(data), "\n\n") != 4 || strings.Contains(string(data), "injected") {
			t.Fatalf("status %d, body %q, %v", resp.StatusCode, data, err)
		}
		noneToAttacker(t)
	})
}
