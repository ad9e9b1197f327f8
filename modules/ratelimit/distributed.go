package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/projectneo/caddy-neo/modules/natsconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Distributed shares the zones' counts between edges through NATS JetStream
// counters (nats-server 2.12 or later): one counter per zone, window and
// key, in the stream Stream under `<subject>.<zone>.<window>.<key>`, where
// <window> is the window's number since the Unix epoch and <key> the first
// 8 bytes of the key's SHA-256 in hex (WireKey). The server adds the edges'
// increments; nothing else aggregates counts.
//
// Every Interval each edge sends, for each key it counted events for since
// the last time, one increment (header Nats-Incr), at most MaxKeys keys per
// zone (the most counted first); the acknowledgement carries the cluster's
// total for that key and window. Every edge also follows the stream (an
// ordered consumer from its end), so it learns the totals of keys other
// edges count, and keeps those that reach a zone's promotion threshold even
// for keys it has not seen yet. A key's estimate is never above the
// cluster's true count; it is below it by what the other edges counted in
// the last interval and a half (send, store, deliver).
//
// The stream is created on first use (memory storage, limits retention,
// one message per subject, counters allowed, messages kept twice the
// longest window plus two intervals, at most MaxBytes, oldest dropped first);
// an existing stream is used as it is. The edge's NATS user needs publish
// rights on `<subject>.>`, `$JS.API.INFO`, `$JS.API.STREAM.INFO.<stream>`,
// `$JS.API.STREAM.CREATE.<stream>`, `$JS.API.CONSUMER.*.<stream>`,
// `$JS.API.CONSUMER.*.<stream>.>` and `$JS.API.CONSUMER.MSG.NEXT.<stream>.>`
// (docs/rate-limit.md).
type Distributed struct {
	// Connection names the neo_nats app connection. Default: "default".
	Connection string `json:"connection,omitempty"`
	// Stream is the JetStream stream of the counters. Default: "NEO_RL".
	Stream string `json:"stream,omitempty"`
	// Subject is the counters' subject prefix. Default: "neo_rl".
	Subject string `json:"subject,omitempty"`
	// Replicas of the stream when this edge creates it (1 to 5).
	// Default: 1 (3 in production).
	Replicas int `json:"replicas,omitempty"`
	// Interval between two sends of the counts. Default: 1s.
	Interval caddy.Duration `json:"interval,omitempty"`
	// MaxKeys is how many keys of a zone one send carries at most; keys
	// with the most new events go first, the others wait for the next send.
	// Default: 10000.
	MaxKeys int `json:"max_keys,omitempty"`
	// MaxBytes bounds the stream when this edge creates it. Default: 256 MiB.
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

// Distributed defaults.
const (
	DefaultStream   = "NEO_RL"
	DefaultSubject  = "neo_rl"
	DefaultInterval = time.Second
	DefaultMaxKeys  = 10000
	DefaultMaxBytes = 256 << 20
	// batch is how many increments are in flight at once.
	batch = 1000
)

func (d *Distributed) provision() {
	if d.Connection == "" {
		d.Connection = natsconn.DefaultConnection
	}
	if d.Stream == "" {
		d.Stream = DefaultStream
	}
	if d.Subject == "" {
		d.Subject = DefaultSubject
	}
	if d.Replicas == 0 {
		d.Replicas = 1
	}
	if d.Interval == 0 {
		d.Interval = caddy.Duration(DefaultInterval)
	}
	if d.MaxKeys == 0 {
		d.MaxKeys = DefaultMaxKeys
	}
	if d.MaxBytes == 0 {
		d.MaxBytes = DefaultMaxBytes
	}
}

func (d *Distributed) validate() error {
	switch {
	case !validToken(d.Stream):
		return fmt.Errorf("stream: %q: want letters, digits, '-' or '_'", d.Stream)
	case !validSubject(d.Subject):
		return fmt.Errorf("subject: %q: want dot-separated tokens of letters, digits, '-' or '_'", d.Subject)
	case d.Replicas < 1 || d.Replicas > 5:
		return fmt.Errorf("replicas: %d: want 1 to 5", d.Replicas)
	case time.Duration(d.Interval) < 10*time.Millisecond:
		return fmt.Errorf("interval: %s: want at least 10ms", time.Duration(d.Interval))
	case d.MaxKeys < 1:
		return fmt.Errorf("max_keys: %d: want at least 1", d.MaxKeys)
	case d.MaxBytes < 1<<20:
		return fmt.Errorf("max_bytes: %d: want at least 1 MiB", d.MaxBytes)
	}
	return nil
}

func validSubject(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if !validToken(tok) {
			return false
		}
	}
	return true
}

// syncer sends and receives one handler's counts.
type syncer struct {
	d      *Distributed
	js     jetstream.JetStream
	zones  map[string]*Zone
	list   []*Zone
	logger *zap.Logger
	maxAge time.Duration
	cancel context.CancelFunc
	done   chan struct{}
	cons   jetstream.ConsumeContext
	cands  []cand
	seq    prometheus.Gauge
}

type cand struct {
	key   uint64
	start int64
	pend  uint32
}

// start checks the connection and starts the sync loop.
func (d *Distributed) start(ctx caddy.Context, zones []*Zone, logger *zap.Logger) (*syncer, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	if _, err := ctx.AppIfConfigured("neo_nats"); err != nil {
		if errors.Is(err, caddy.ErrNotConfigured) {
			return nil, fmt.Errorf("connection: the neo_nats app is not configured; add a neo_nats global option with connection %q", d.Connection)
		}
		return nil, err
	}
	nc, err := natsconn.Conn(ctx, d.Connection)
	if err != nil {
		return nil, fmt.Errorf("connection: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("connection %q: jetstream: %w", d.Connection, err)
	}
	return d.run(ctx, js, zones, logger)
}

// run binds the stream and starts the sync loop, which ends with ctx.
func (d *Distributed) run(ctx context.Context, js jetstream.JetStream, zones []*Zone, logger *zap.Logger) (*syncer, error) {
	s := &syncer{d: d, js: js, zones: map[string]*Zone{}, list: zones, logger: logger, done: make(chan struct{}), seq: mStreamSeq.WithLabelValues(d.Stream)}
	var longest time.Duration
	for _, z := range zones {
		s.zones[z.name] = z
		longest = max(longest, time.Duration(z.Window))
	}
	s.maxAge = max(2*longest+2*time.Duration(d.Interval), time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := s.ensure(bctx)
	cancel()
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("connection %q: the NATS server has no JetStream for this account: %w", d.Connection, err)
		}
		logger.Warn("rate-limit counter stream not ready; counting locally until it is",
			zap.String("stream", d.Stream), zap.Error(err))
	}
	lctx, stop := context.WithCancel(ctx)
	s.cancel = stop
	go s.loop(lctx)
	return s, nil
}

// ensure binds the stream (creating it if missing) and follows it.
func (s *syncer) ensure(ctx context.Context) error {
	if s.cons != nil {
		return nil
	}
	str, err := s.js.Stream(ctx, s.d.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		str, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:              s.d.Stream,
			Description:       "caddy-neo distributed rate-limit counters",
			Subjects:          []string{s.d.Subject + ".>"},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.MemoryStorage,
			Replicas:          s.d.Replicas,
			MaxMsgsPerSubject: 1,
			MaxAge:            s.maxAge,
			MaxBytes:          s.d.MaxBytes,
			Discard:           jetstream.DiscardOld,
			AllowMsgCounter:   true,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			str, err = s.js.Stream(ctx, s.d.Stream)
		}
	}
	if err != nil {
		return err
	}
	if cfg := str.CachedInfo().Config; !cfg.AllowMsgCounter {
		return fmt.Errorf("stream %s exists without counters (allow_msg_counter)", s.d.Stream)
	} else if cfg.MaxAge > 0 && cfg.MaxAge < s.maxAge {
		s.logger.Warn("rate-limit counter stream keeps counters shorter than two windows; counts of long windows may be lost",
			zap.String("stream", s.d.Stream), zap.Duration("max_age", cfg.MaxAge), zap.Duration("want", s.maxAge))
	}
	filters := make([]string, 0, len(s.list))
	for _, z := range s.list {
		filters = append(filters, s.d.Subject+"."+z.name+".>")
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("following stream %s: %w", s.d.Stream, err)
	}
	cc, err := cons.Consume(s.receive)
	if err != nil {
		return fmt.Errorf("following stream %s: %w", s.d.Stream, err)
	}
	s.cons = cc
	return nil
}

func (s *syncer) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(time.Duration(s.d.Interval))
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			if s.cons != nil {
				s.cons.Stop()
			}
			return
		case <-t.C:
		}
		if s.cons == nil {
			bctx, cancel := context.WithTimeout(ctx, time.Duration(s.d.Interval)+time.Second)
			err := s.ensure(bctx)
			cancel()
			if err != nil {
				if !failing {
					s.logger.Warn("rate-limit counter stream not ready; counting locally", zap.String("stream", s.d.Stream), zap.Error(err))
				}
				failing = true
				continue
			}
			if failing {
				s.logger.Info("rate-limit counter stream ready", zap.String("stream", s.d.Stream))
			}
			failing = false
		}
		for _, z := range s.list {
			s.send(ctx, z)
		}
	}
}

// stop ends the loop and waits for it.
func (s *syncer) stop() {
	s.cancel()
	<-s.done
}

// send pushes a zone's new events and applies the totals acknowledged.
func (s *syncer) send(ctx context.Context, z *Zone) {
	t := z.table
	s.cands = s.cands[:0]
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.ents {
			if e := &sh.ents[j]; e.pend > 0 {
				s.cands = append(s.cands, cand{key: e.key, start: e.start, pend: e.pend})
			}
		}
		sh.mu.Unlock()
	}
	if len(s.cands) > s.d.MaxKeys {
		slices.SortFunc(s.cands, func(a, b cand) int { return int(b.pend) - int(a.pend) })
		s.cands = s.cands[:s.d.MaxKeys]
	}
	type sent struct {
		c   cand
		f   jetstream.PubAckFuture
		win int64
	}
	inflight := make([]sent, 0, min(len(s.cands), batch))
	flush := func() {
		for _, x := range inflight {
			select {
			case ack := <-x.f.Ok():
				z.stats.sent.Inc()
				if total, ok := parseCount(ack.Value); ok {
					z.apply(x.c.key, x.win, total, clock(true))
				}
			case err := <-x.f.Err():
				z.stats.syncErrors.Inc()
				z.table.restore(x.c.key, x.c.start, x.c.pend)
				s.logger.Debug("rate-limit counter not sent", zap.String("zone", z.name), zap.Error(err))
			case <-ctx.Done():
				return
			}
		}
		inflight = inflight[:0]
	}
	for _, c := range s.cands {
		p := z.table.take(c.key, c.start)
		if p == 0 {
			continue
		}
		c.pend = p
		win := c.start / z.limits.window
		msg := &nats.Msg{
			Subject: s.d.Subject + "." + z.name + "." + strconv.FormatInt(win, 10) + "." + fmt.Sprintf("%016x", c.key),
			Header:  nats.Header{"Nats-Incr": []string{"+" + strconv.FormatUint(uint64(p), 10)}},
		}
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			z.stats.syncErrors.Inc()
			z.table.restore(c.key, c.start, p)
			continue
		}
		inflight = append(inflight, sent{c, f, win})
		if len(inflight) == batch {
			flush()
		}
	}
	flush()
}

// receive applies a counter another edge (or this one) updated.
func (s *syncer) receive(m jetstream.Msg) {
	zone, win, key, total, ok := parseCounter(s.d.Subject, m.Subject(), m.Data())
	if ok {
		if z := s.zones[zone]; z != nil {
			z.stats.received.Inc()
			z.apply(key, win, total, clock(true))
		}
	}
	if md, err := m.Metadata(); err == nil {
		s.seq.Set(float64(md.Sequence.Stream))
	}
}

// parseCounter reads a counter message: its subject
// `<prefix>.<zone>.<window>.<16 hex digits>` and its body {"val":"<n>"}.
func parseCounter(prefix, subject string, data []byte) (zone string, win int64, key uint64, total uint64, ok bool) {
	rest, found := strings.CutPrefix(subject, prefix+".")
	if !found {
		return
	}
	zone, rest, found = strings.Cut(rest, ".")
	if !found || zone == "" {
		return
	}
	ws, ks, found := strings.Cut(rest, ".")
	if !found || len(ks) != 16 {
		return
	}
	w, err := strconv.ParseInt(ws, 10, 64)
	if err != nil || w < 0 {
		return
	}
	k, err := strconv.ParseUint(ks, 16, 64)
	if err != nil {
		return
	}
	var v struct {
		Val string `json:"val"`
	}
	if json.Unmarshal(data, &v) != nil {
		return
	}
	t, ok := parseCount(v.Val)
	if !ok {
		return
	}
	return zone, w, k, t, true
}

// parseCount reads a counter's value (a decimal integer of any size; below
// zero counts as 0, above 2^32-1 as 2^32-1).
func parseCount(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	neg := s[0] == '-'
	digits := strings.TrimPrefix(s, "-")
	if digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	if neg {
		return 0, true
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > 1<<32-1 {
		return 1<<32 - 1, true
	}
	return n, true
}

// apply merges a cluster total for key in window win into the zone.
func (z *Zone) apply(key uint64, win int64, total uint64, now int64) {
	t := z.table
	w := z.limits.window
	m := t.mix(key)
	s := t.shard(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, slot := s.find(key, m)
	if i < 0 {
		// A key this edge has not seen: kept only when heavy and current.
		if total < uint64(z.limits.promoteAt) || win != now/w {
			return
		}
		i = s.insert(t, key, m, slot, now, w)
		e := &s.ents[i]
		e.start = win * w
		e.curr = uint32(total)
		return
	}
	e := &s.ents[i]
	roll(e, now, w)
	switch e.start / w {
	case win:
		if v := total + uint64(e.pend); v > uint64(e.curr) {
			e.curr = uint32(min(v, 1<<32-1))
		}
	case win + 1:
		if total > uint64(e.prev) {
			e.prev = uint32(total)
		}
	}
}

// take returns and clears the events of key not yet sent, if its window is
// still the one starting at start.
func (t *table) take(key uint64, start int64) uint32 {
	m := t.mix(key)
	s := t.shard(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := s.find(key, m)
	if i < 0 || s.ents[i].start != start {
		return 0
	}
	p := s.ents[i].pend
	s.ents[i].pend = 0
	return p
}

// restore gives back events that could not be sent.
func (t *table) restore(key uint64, start int64, p uint32) {
	m := t.mix(key)
	s := t.shard(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, _ := s.find(key, m); i >= 0 && s.ents[i].start == start {
		s.ents[i].pend += p
	}
}
