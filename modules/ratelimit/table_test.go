package ratelimit

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

const sec = int64(time.Second)

func localLimits(events int, window time.Duration) *limits {
	return &limits{events: uint32(events), window: int64(window), promoteAt: uint32(max(2, (events+15)/16))}
}

// allowedN sends n events of key at now and returns how many were allowed.
func allowedN(t *table, key uint64, now int64, l *limits, n int) int {
	ok := 0
	for range n {
		if t.hit(key, now, l).allowed {
			ok++
		}
	}
	return ok
}

func TestSlidingWindow(t *testing.T) {
	l := localLimits(10, time.Minute)
	t0 := int64(1_000_000) * sec
	for name, tc := range map[string]struct {
		first int   // events at t0
		at    int64 // the time of the second burst
		want  int   // allowed in the second burst of 20
	}{
		"same window":         {10, t0 + 30*sec, 0},
		"half slid":           {10, t0 + 90*sec, 5},   // 10*0.5 = 5 estimated
		"quarter slid":        {10, t0 + 75*sec, 2},   // 10*0.75 = 7.5: 2 more fit
		"two windows later":   {10, t0 + 120*sec, 10}, // previous window empty
		"partly used":         {4, t0 + 30*sec, 6},
		"partly used, slid":   {4, t0 + 90*sec, 8}, // 4*0.5 = 2
		"just after boundary": {10, t0 + 60*sec + 1, 0},
	} {
		t.Run(name, func(t *testing.T) {
			tb := newTable(minMemory, false, nil)
			if got := allowedN(tb, 1, t0, l, tc.first); got != tc.first {
				t.Fatalf("first burst: %d of %d allowed", got, tc.first)
			}
			if got := allowedN(tb, 1, tc.at, l, 20); got != tc.want {
				t.Fatalf("second burst at +%ds: %d allowed, want %d", (tc.at-t0)/sec, got, tc.want)
			}
		})
	}
}

// The first window of a key is exact, whatever the time of its first event.
func TestFirstWindowExact(t *testing.T) {
	l := localLimits(20, time.Minute)
	tb := newTable(minMemory, false, nil)
	now := int64(12345) * sec
	for i := range 30 {
		v := tb.hit(7, now+int64(i)*sec, l)
		if v.allowed != (i < 20) {
			t.Fatalf("event %d: allowed=%v", i, v.allowed)
		}
	}
}

// Retry-After: at now+wait the next event is allowed, a second earlier not.
func TestWaitTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		events := 1 + rng.IntN(50)
		window := time.Duration(1+rng.IntN(600)) * time.Second
		l := localLimits(events, window)
		tb := newTable(minMemory, false, nil)
		now := int64(1_000_000) * sec
		// A random history: bursts at random times, until limited.
		var v verdict
		for {
			v = tb.hit(1, now, l)
			if !v.allowed {
				break
			}
			now += rng.Int64N(int64(window) / int64(events))
		}
		if v.wait <= 0 {
			t.Fatalf("limited with wait %d", v.wait)
		}
		probe := func(at int64) bool {
			c := newTable(minMemory, false, nil)
			m := c.mix(1)
			s := c.shard(m)
			src := tb.shard(tb.mix(1))
			i, _ := src.find(1, tb.mix(1))
			e := src.ents[i]
			_, slot := s.find(1, m)
			j := s.insert(c, 1, m, slot, at, l.window)
			s.ents[j].start, s.ents[j].curr, s.ents[j].prev = e.start, e.curr, e.prev
			return c.hit(1, at, l).allowed
		}
		if !probe(now + v.wait) {
			t.Fatalf("events %d window %s: still limited after the wait %s", events, window, time.Duration(v.wait))
		}
		if v.wait > sec && probe(now+v.wait-sec) {
			t.Fatalf("events %d window %s: allowed a second before the wait %s ended", events, window, time.Duration(v.wait))
		}
	}
}

// The table never holds more keys than its memory allows, and its state
// never takes more memory.
func TestMemoryBound(t *testing.T) {
	for _, mem := range []int64{minMemory, 1 << 20, 3<<20 + 12345} {
		tb := newTable(mem, false, nil)
		l := localLimits(5, time.Hour)
		c := tb.Capacity()
		if c < int(mem)/(entrySize+2*slotSize)*3/4 {
			t.Fatalf("memory %d: capacity %d is too small", mem, c)
		}
		for k := range uint64(3 * c) {
			tb.hit(mix64(k), int64(k), l)
		}
		if n := tb.Len(); n > c {
			t.Fatalf("memory %d: %d keys held, capacity %d", mem, n, c)
		}
		if b := tb.Bytes(); int64(b) > mem {
			t.Fatalf("memory %d: state takes %d bytes", mem, b)
		}
	}
}

// mix64 spreads test keys over shards and slots as maphash would.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// A flood of new keys does not evict the keys that matter: a client that
// was limited, or that used a sixteenth of its limit, keeps its count while
// ten times the table's capacity of one-off keys pass, without being
// touched in between.
func TestHeavyKeysSurviveFlood(t *testing.T) {
	l := localLimits(32, time.Hour)
	tb := newTable(minMemory, false, nil)
	now := int64(1000) * sec
	const limitedKey, busyKey = 1 << 40, 2 << 40
	if got := allowedN(tb, mix64(limitedKey), now, l, 40); got != 32 {
		t.Fatalf("limited key: %d allowed", got)
	}
	if got := allowedN(tb, mix64(busyKey), now, l, 4); got != 4 {
		t.Fatalf("busy key: %d allowed", got)
	}
	for k := range uint64(10 * tb.Capacity()) {
		tb.hit(mix64(k), now, l)
	}
	if got := allowedN(tb, mix64(limitedKey), now, l, 5); got != 0 {
		t.Fatalf("limited key after the flood: %d allowed, want 0 (its count was lost)", got)
	}
	if got := allowedN(tb, mix64(busyKey), now, l, 40); got != 28 {
		t.Fatalf("busy key after the flood: %d allowed, want 28", got)
	}
}

// When more keys are heavy than the table holds, the least recently used
// heavy keys go, and the table stays consistent.
func TestIndexConsistentUnderChurn(t *testing.T) {
	l := localLimits(3, time.Hour)
	tb := newTable(minMemory, false, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	universe := uint64(4 * tb.Capacity())
	for i := range 200000 {
		k := mix64(rng.Uint64N(universe))
		tb.hit(k, int64(i), l)
		if i%5000 == 0 {
			checkShards(t, tb)
		}
	}
	checkShards(t, tb)
}

func checkShards(t *testing.T, tb *table) {
	t.Helper()
	for si := range tb.shards {
		s := &tb.shards[si]
		inIdx := 0
		for slot, v := range s.idx {
			if v == 0 {
				continue
			}
			inIdx++
			e := s.ents[v-1]
			if i, got := s.find(e.key, tb.mix(e.key)); i != v-1 || got != slot {
				t.Fatalf("shard %d: entry %d not found at its slot", si, v-1)
			}
		}
		if inIdx != len(s.ents) {
			t.Fatalf("shard %d: %d entries, %d in the index", si, len(s.ents), inIdx)
		}
		n := 0
		for seg := range 2 {
			prev := int32(-1)
			for i := s.head[seg]; i >= 0; i = s.ents[i].nextE {
				if s.ents[i].prevE != prev || s.ents[i].seg != uint8(seg) {
					t.Fatalf("shard %d: list %d broken at %d", si, seg, i)
				}
				prev = i
				n++
			}
			if s.tail[seg] != prev {
				t.Fatalf("shard %d: list %d tail %d, want %d", si, seg, s.tail[seg], prev)
			}
		}
		if n != len(s.ents) || int(s.count[0]+s.count[1]) != n || s.count[1] > s.maxProtected {
			t.Fatalf("shard %d: lists hold %d (counts %v, max protected %d), entries %d", si, n, s.count, s.maxProtected, len(s.ents))
		}
	}
}

// An event a later zone limited is taken back.
func TestUndo(t *testing.T) {
	l := localLimits(2, time.Minute)
	tb := newTable(minMemory, false, nil)
	v := tb.hit(9, 0, l)
	tb.undo(9, v.start)
	if got := allowedN(tb, 9, 1, l, 5); got != 2 {
		t.Fatalf("%d allowed after an undo, want 2", got)
	}
}

// A key costs entrySize bytes plus its index share: measured on the heap.
func TestBytesPerKey(t *testing.T) {
	const mem = 8 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := newTable(mem, false, nil)
	l := localLimits(5, time.Hour)
	for k := range uint64(tb.Capacity()) {
		tb.hit(mix64(k), 0, l)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := tb.Len()
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	t.Logf("%d keys in %d bytes of memory: %.1f bytes per key on the heap (entry %d bytes)", n, mem, per, entrySize)
	if per > float64(mem)/float64(n)*1.05 {
		t.Fatalf("%.1f bytes per key: more than the configured memory allows", per)
	}
	runtime.KeepAlive(tb)
}
