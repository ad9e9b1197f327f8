package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"unsafe"
)

// The state of a zone: a fixed-size table of sliding-window counters.
//
// Each key costs one entry (entrySize bytes) and one to two index slots
// (4 bytes each): O(1) bytes whatever the limit, where caddy-ratelimit keeps
// a ring of `events` timestamps per key. The table never holds more entries
// than the zone's memory allows; when it is full, a new key takes the place
// of the least recently used light key (segmented LRU, below), so a flood of
// new keys (addresses, user names) cannot grow the edge's memory, and the
// keys that matter for the limit, the heavy ones, keep their counts.
//
// Sliding-window counter: an entry counts the events of its current window
// (curr) and of the previous one (prev). At elapsed time e into the current
// window, the events of the last window length are estimated as
// prev*(W-e)/W + curr, and an event is allowed while that estimate plus one
// is at most the limit. In the first window of a key the count is exact.
// Locally a key's windows start at its first event; with distributed counts
// they are aligned on multiples of W since the Unix epoch, so that every edge
// counts the same windows.
//
// Segmented LRU: an entry starts on probation; a second event once the
// estimate has reached promoteAt (a sixteenth of the limit, at least 2), or
// any limited event, moves it to the protected segment (at most 3/4 of the
// table; beyond, its least recently used entry goes back on probation). A
// new key evicts the least recently used entry on probation, and only when
// none is left the least recently used protected one. A flood of addresses sending a few
// requests each only churns the probation segment; a client near or over its
// limit is protected, so its count is not lost to the flood.

// nShards splits a table so that requests of different keys rarely wait for
// the same lock. A power of two.
const nShards = 16

// entry is one key's state.
type entry struct {
	key   uint64 // the key's hash (keyHash)
	start int64  // start of the current window, nanoseconds on the zone's clock
	curr  uint32 // events in the current window (with distributed counts: the cluster's, as known)
	prev  uint32 // events in the previous window
	pend  uint32 // distributed: events counted here and not yet sent
	prevE int32  // LRU neighbours in the entry's segment, -1 for none
	nextE int32
	seg   uint8 // segProbation or segProtected
	flags uint8 // flagLogged
}

const (
	segProbation = 0
	segProtected = 1

	// flagLogged: the key's first limited request of this window was logged.
	flagLogged = 1
)

// entrySize and slotSize are what one key costs.
const (
	entrySize = int(unsafe.Sizeof(entry{}))
	slotSize  = 4
)

// minMemory is the smallest memory a zone may have: a few entries per shard.
const minMemory = 64 << 10

// shard is one lock's part of a table.
type shard struct {
	mu   sync.Mutex
	idx  []int32 // open addressing (linear probing): entry index + 1, 0 for empty
	ents []entry // grows up to max, never beyond
	max  int
	// maxProtected bounds the protected segment (3/4 of max), so that a new
	// key always outlives at least max/4 newer keys on probation.
	maxProtected int32
	head         [2]int32 // most recently used entry of each segment, -1 for none
	tail         [2]int32 // least recently used
	count        [2]int32
	_            [64]byte // keep neighbouring shards' locks off this cache line
}

// table is a zone's state. It outlives config reloads (see pool in
// ratelimit.go) while a zone of the same name, memory and mode exists.
type table struct {
	shards [nShards]shard
	seed   maphash.Seed
	// public: keys are hashes anyone can compute (distributed zones), so
	// the index position is mixed with seed (an attacker cannot aim at one
	// slot and lengthen its probe sequence).
	public bool
	stats  *zoneMetrics
}

// capacity returns how many entries and index slots per shard fit in memory
// bytes: the largest power-of-two index whose entries, at a load of at most
// 3/4, and the index itself fit.
func capacity(memory int64) (entries, slots int) {
	per := memory / nShards
	for s := 8; ; s <<= 1 {
		e := (per - int64(s)*slotSize) / int64(entrySize)
		if e <= 0 {
			break
		}
		if e > int64(s)*3/4 {
			e = int64(s) * 3 / 4
		}
		if e > int64(entries) {
			entries, slots = int(e), s
		}
		if int64(s)*slotSize > per {
			break
		}
	}
	return entries, slots
}

func newTable(memory int64, public bool, stats *zoneMetrics) *table {
	t := &table{seed: maphash.MakeSeed(), public: public, stats: stats}
	entries, slots := capacity(memory)
	for i := range t.shards {
		s := &t.shards[i]
		s.idx = make([]int32, slots)
		s.max = entries
		s.maxProtected = int32(max(1, entries*3/4))
		s.head = [2]int32{-1, -1}
		s.tail = [2]int32{-1, -1}
	}
	if stats != nil {
		stats.memory.Add(float64(nShards * slots * slotSize))
	}
	return t
}

// Capacity is how many keys the table holds at most.
func (t *table) Capacity() int { return nShards * t.shards[0].max }

// Len is how many keys the table holds.
func (t *table) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.ents)
		s.mu.Unlock()
	}
	return n
}

// Bytes is the memory the table's state takes now.
func (t *table) Bytes() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += cap(s.ents)*entrySize + len(s.idx)*slotSize
		s.mu.Unlock()
	}
	return n
}

// mix spreads a key's hash over shards and slots.
func (t *table) mix(key uint64) uint64 {
	if t.public {
		return maphash.Comparable(t.seed, key)
	}
	return key
}

func (t *table) shard(m uint64) *shard { return &t.shards[m>>(64-4)] }

// find returns the entry of key (with mixed hash m) and its index slot, or -1.
func (s *shard) find(key, m uint64) (e int32, slot int) {
	mask := len(s.idx) - 1
	for i := int(m) & mask; ; i = (i + 1) & mask {
		v := s.idx[i]
		if v == 0 {
			return -1, i
		}
		if s.ents[v-1].key == key {
			return v - 1, i
		}
	}
}

// unlink takes entry i out of its segment's list.
func (s *shard) unlink(i int32) {
	e := &s.ents[i]
	if e.prevE >= 0 {
		s.ents[e.prevE].nextE = e.nextE
	} else {
		s.head[e.seg] = e.nextE
	}
	if e.nextE >= 0 {
		s.ents[e.nextE].prevE = e.prevE
	} else {
		s.tail[e.seg] = e.prevE
	}
	s.count[e.seg]--
}

// pushFront makes entry i the most recently used of segment seg.
func (s *shard) pushFront(i int32, seg uint8) {
	e := &s.ents[i]
	e.seg = seg
	e.prevE = -1
	e.nextE = s.head[seg]
	if e.nextE >= 0 {
		s.ents[e.nextE].prevE = i
	} else {
		s.tail[seg] = i
	}
	s.head[seg] = i
	s.count[seg]++
}

// touch marks entry i used in its segment.
func (s *shard) touch(i int32) {
	seg := s.ents[i].seg
	if s.head[seg] == i {
		return
	}
	s.unlink(i)
	s.pushFront(i, seg)
}

// protect marks entry i used and moves it to the protected segment; when
// that is full, its least recently used entry goes back on probation.
func (s *shard) protect(i int32) {
	if s.ents[i].seg == segProtected {
		s.touch(i)
		return
	}
	s.unlink(i)
	if s.count[segProtected] >= s.maxProtected {
		d := s.tail[segProtected]
		s.unlink(d)
		s.pushFront(d, segProbation)
	}
	s.pushFront(i, segProtected)
}

// removeSlot empties index slot i, shifting the following entries of its
// probe sequence back (no tombstones: the index never degrades).
func (s *shard) removeSlot(t *table, i int) {
	mask := len(s.idx) - 1
	j := i
	for {
		j = (j + 1) & mask
		v := s.idx[j]
		if v == 0 {
			break
		}
		home := int(t.mix(s.ents[v-1].key)) & mask
		// Move v to i if its home is not cyclically within (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.idx[i] = v
			i = j
		}
	}
	s.idx[i] = 0
}

// insert adds key, evicting if the shard is full, and returns its entry.
// The entry is zero but for its key, at the front of the probation segment.
func (s *shard) insert(t *table, key, m uint64, slot int, now, window int64) int32 {
	var i int32
	if len(s.ents) < s.max {
		if len(s.ents) == cap(s.ents) {
			n := min(max(2*cap(s.ents), 16), s.max)
			grown := make([]entry, len(s.ents), n)
			copy(grown, s.ents)
			if t.stats != nil {
				t.stats.memory.Add(float64((n - cap(s.ents)) * entrySize))
			}
			s.ents = grown
		}
		s.ents = append(s.ents, entry{})
		i = int32(len(s.ents) - 1)
		if t.stats != nil {
			t.stats.keys.Inc()
		}
	} else {
		seg := uint8(segProbation)
		if s.tail[seg] < 0 {
			seg = segProtected
		}
		i = s.tail[seg]
		v := &s.ents[i]
		if t.stats != nil {
			switch {
			case now-v.start >= 2*window:
				t.stats.evictExpired.Inc()
			case seg == segProbation:
				t.stats.evictLight.Inc()
			default:
				t.stats.evictHeavy.Inc()
			}
		}
		_, vslot := s.find(v.key, t.mix(v.key))
		s.removeSlot(t, vslot)
		s.unlink(i)
		// The slot found for key may have moved by the shift.
		_, slot = s.find(key, m)
	}
	s.ents[i] = entry{key: key}
	s.idx[slot] = i + 1
	s.pushFront(i, segProbation)
	return i
}

// roll advances entry e to the window holding now.
func roll(e *entry, now, window int64) {
	if now-e.start < window {
		return
	}
	n := (now - e.start) / window
	if n == 1 {
		e.prev = e.curr
	} else {
		e.prev = 0
	}
	e.curr, e.pend, e.flags = 0, 0, 0
	e.start += n * window
}

// weight is the share of the previous window still inside the sliding
// window at now, in 1/65536.
func weight(e *entry, now, window int64) uint64 {
	el := now - e.start
	if el < 0 {
		el = 0
	}
	hi, lo := bits.Mul64(uint64(window-el), 1<<16)
	q, _ := bits.Div64(hi, lo, uint64(window))
	return q
}

// estimate is the sliding-window count at now, in 1/65536 events.
func estimate(e *entry, now, window int64) uint64 {
	return uint64(e.prev)*weight(e, now, window) + uint64(e.curr)<<16
}

// verdict is the outcome of one event.
type verdict struct {
	allowed bool
	// firstLimit: the key's first limited event in this window.
	firstLimit bool
	// wait: nanoseconds until an event would be allowed (limited events).
	wait int64
	// start of the window the event was counted in (to undo it).
	start int64
}

// limits is a zone's settings as the table needs them for one event.
type limits struct {
	events    uint32
	window    int64 // nanoseconds
	aligned   bool  // windows start at multiples of window (distributed)
	promoteAt uint32
	pend      bool // count events to send (distributed)
}

// hit counts one event of key at now under l.
func (t *table) hit(key uint64, now int64, l *limits) verdict {
	m := t.mix(key)
	s := t.shard(m)
	s.mu.Lock()
	i, slot := s.find(key, m)
	fresh := i < 0
	if fresh {
		i = s.insert(t, key, m, slot, now, l.window)
		e := &s.ents[i]
		if l.aligned {
			e.start = now - mod(now, l.window)
		} else {
			e.start = now
		}
	}
	e := &s.ents[i]
	roll(e, now, l.window)
	est := estimate(e, now, l.window)
	var v verdict
	v.start = e.start
	if est+1<<16 <= uint64(l.events)<<16 {
		v.allowed = true
		if e.curr < ^uint32(0) {
			e.curr++
		}
		if l.pend {
			e.pend++
		}
		if !fresh && e.seg == segProbation && est+1<<16 >= uint64(l.promoteAt)<<16 {
			s.protect(i)
		} else {
			s.touch(i)
		}
	} else {
		v.firstLimit = e.flags&flagLogged == 0
		e.flags |= flagLogged
		v.wait = waitTime(e, now, l)
		s.protect(i)
	}
	s.mu.Unlock()
	return v
}

// undo takes back an event counted at window start (a later zone limited
// the request, so it did not happen).
func (t *table) undo(key uint64, start int64) {
	m := t.mix(key)
	s := t.shard(m)
	s.mu.Lock()
	if i, _ := s.find(key, m); i >= 0 {
		e := &s.ents[i]
		if e.start == start && e.curr > 0 {
			e.curr--
			if e.pend > 0 {
				e.pend--
			}
		}
	}
	s.mu.Unlock()
}

// waitTime is how long after now the sliding-window estimate of e leaves
// room for one more event, in nanoseconds (at least 1).
func waitTime(e *entry, now int64, l *limits) int64 {
	w := float64(l.window)
	room := float64(l.events) - 1
	var at float64 // time since e.start
	switch {
	case float64(e.curr) > room:
		// Not before the next window, when curr becomes prev and must have
		// slid out enough.
		at = w + w*(float64(e.curr)-room)/float64(e.curr)
	case e.prev > 0:
		at = w * (float64(e.prev) - (room - float64(e.curr))) / float64(e.prev)
	default:
		return 1
	}
	d := int64(at) - (now - e.start)
	if d < 1 {
		d = 1
	}
	return d
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

// ZoneCapacity is how many keys a zone with memory bytes holds at most.
func ZoneCapacity(memory int64) int {
	e, _ := capacity(memory)
	return nShards * e
}
