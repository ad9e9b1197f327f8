package natshttp

import (
	"fmt"
	"time"
)

// probeMisses is how many consecutive "no responders" answers to probes mark
// a gateway gone: one may come while its connection moves to another server
// of the cluster.
const probeMisses = 2

// acceptProbes is how many check intervals, beyond acceptDelay, the edge
// waits for a gateway to acknowledge a request (its inbox or its response; a
// gateway acknowledges after acceptDelay at the latest) before it treats the request as lost with the process
// or the NATS server that carried it.
const acceptProbes = 3

// gatewayGoneError answers 502 through the reverse proxy: the gateway that
// took the request, or the NATS path to it, died with the request in flight.
type gatewayGoneError struct{ msg string }

func (e gatewayGoneError) Error() string { return "nats: " + e.msg }

// prober checks, while the edge waits on a gateway, that the gateway still
// serves the request: every interval it sends a probe frame to the gateway's
// per-request inbox (once known). The gateway answers it (a probe frame with
// the last frame it sent, or an error frame when it no longer has the
// request) on the stream's inbox, like every other frame; NATS answers "no
// responders" when the gateway's connection is gone. A nil prober never
// fires.
type prober struct {
	st       *stream
	interval time.Duration
	timer    *time.Timer
	misses   int
}

func newProber(st *stream, interval time.Duration) *prober {
	if interval <= 0 {
		return nil
	}
	return &prober{st: st, interval: interval, timer: time.NewTimer(interval)}
}

// C fires when the next probe is due.
func (p *prober) C() <-chan time.Time {
	if p == nil {
		return nil
	}
	return p.timer.C
}

// send probes the peer (when its inbox is known) and schedules the next probe.
func (p *prober) send() {
	if p.st.peerInbox() != "" {
		p.st.sendControl(kindProbe, 0, "")
	}
	p.timer.Reset(p.interval)
}

// result takes a probe's answer and returns an error once the gateway is
// known to be gone, to have lost the request, or to have sent frames that
// never arrived. next is the frame the edge waits for (0 the head, n the
// data frame n) and queued how many frames it has received but not read:
// the gateway answers a probe after the frames it sent before, on the same
// connection, so any frame it reports sent is here unless it was lost.
func (p *prober) result(a probeAnswer, next int64, queued int) error {
	if p == nil {
		return nil
	}
	switch a.r {
	case probeAlive:
		p.misses = 0
		if a.sent >= 0 && a.sent >= next+int64(queued) {
			return gatewayGoneError{fmt.Sprintf("response frames were lost: the stage gateway sent frame %d, the edge has up to %d", a.sent, next+int64(queued)-1)}
		}
	case probeGone:
		p.misses++
		if p.misses >= probeMisses {
			return gatewayGoneError{"the stage gateway serving the request is gone (no responders to its inbox)"}
		}
	case probeUnknown:
		return gatewayGoneError{"the stage gateway no longer serves the request (its response was lost)"}
	}
	return nil
}

// rearm makes C fire after d (the timer has fired and been drained).
func (p *prober) rearm(d time.Duration) { p.timer.Reset(d) }

func (p *prober) stop() {
	if p != nil {
		p.timer.Stop()
	}
}
