package wafaccel

import (
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/types/variables"
)

// The verdict cache. What rule skipping learns from one collection — which
// of the candidates targeting it some value of the collection may match — is
// a function of the collection's values alone. Requests repeat most of them:
// the same header lines and header names from a client, the same paths, the
// same argument names for an API, often the same argument values. So each
// table keeps, per collection, the answer for the texts it has recently
// seen, and a transaction whose collection holds exactly a text seen before
// takes the answer instead of checking every candidate again.
//
// The key is the whole text (not a hash of it: a collision would skip a
// rule that may match), prefixed with the table's number and the
// collection's, and followed by the NUL flag (whether some value holds a
// NUL, which the joined text alone does not tell). The cache is process
// wide and bounded in bytes whatever the number of WAFs (tenants) and the
// traffic: verdictShards shards of verdictShardBytes each, a random entry
// evicted when a shard is full, texts longer than maxCachedText never kept.
// A table's entries die with it by eviction (table numbers are never reused).

const (
	verdictShards     = 16
	verdictShardBytes = 256 << 10 // 4 MiB in all
	maxCachedText     = 4 << 10
	// entryOverhead approximates a map entry's bookkeeping, charged
	// against the shard's budget with the key and the bits.
	entryOverhead = 64
	keyHeadLen    = 6 // table number (4 bytes), collection index (2 bytes)
)

// verdictCacheOn turns the cache off for the side-by-side benchmark and the
// differential test.
var verdictCacheOn = func() *atomic.Bool { var b atomic.Bool; b.Store(true); return &b }()

var (
	verdictHits   atomic.Uint64 // test statistics (countStats)
	verdictMisses atomic.Uint64
	tableNumbers  atomic.Uint32
)

type verdictShard struct {
	mu    sync.Mutex
	m     map[string][]uint64
	bytes int
	_     [40]byte // keep shards on separate cache lines
}

var verdicts [verdictShards]verdictShard

// keyPool holds the buffers transactions build keys in.
var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// skipVar is one collection a table's candidates target.
type skipVar struct {
	v     variables.RuleVariable
	cands []int32  // the candidates targeting it, by number
	mask  []uint64 // the same as a bit set
	shard uint32
}

// tableIndex is the per-collection view of a table, built at its first
// evaluation (after every rule was initialised).
type tableIndex struct {
	once    sync.Once
	all     []*skipCand // every candidate, numbered in table order
	vars    []skipVar
	words   int
	keyHead [4]byte
	// protected: the candidates that may lie in a skip:N window (flow.go),
	// never removed; byID numbers the candidates by rule id.
	protected []uint64
	byID      map[int]int
	txCands   []int // the settled TX comparisons, by number
	txSlots   txSlots
}

func (t *skipTable) finalize() {
	t.once.Do(func() {
		if len(t.txPending) > 0 && t.flow != nil {
			w := t.flow.phaseWrites(int(t.phase))
			g := &skipGroup{}
			for _, c := range t.txPending {
				if c.tx.settled(w) {
					g.cands = append(g.cands, c)
				}
			}
			if len(g.cands) > 0 {
				t.groups = append(t.groups, g)
				t.n += len(g.cands)
			}
		}
		t.words = (t.n + 63) / 64
		id := tableNumbers.Add(1)
		t.keyHead = [4]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}
		byVar := map[variables.RuleVariable]int{}
		for _, g := range t.groups {
			for i := range g.cands {
				n := len(t.all)
				t.all = append(t.all, &g.cands[i])
				if g.cands[i].tx != nil {
					t.txCands = append(t.txCands, n)
					t.txSlots.assign(g.cands[i].tx)
				}
				for _, v := range g.vars {
					k, ok := byVar[v]
					if !ok {
						k = len(t.vars)
						byVar[v] = k
						t.vars = append(t.vars, skipVar{
							v:     v,
							mask:  make([]uint64, t.words),
							shard: (id*7 + uint32(k)) % verdictShards,
						})
					}
					sv := &t.vars[k]
					sv.cands = append(sv.cands, int32(n))
					sv.mask[n>>6] |= 1 << (n & 63)
				}
			}
		}
		t.byID = make(map[int]int, len(t.all))
		for n, c := range t.all {
			t.byID[c.id] = n
		}
		t.protected = t.protectedMask(nil)
	})
}

// protectedMask returns the candidates that may lie in a skip:N window of
// a rule after the table's neoSkip rule; removed reports the rules removed
// in this transaction outside the rules (nil: none).
func (t *skipTable) protectedMask(removed func(id int) bool) []uint64 {
	m := make([]uint64, t.words)
	if t.flow != nil {
		t.flow.protectedIDs(t.pos, t.phase, removed, func(id int) {
			if n, ok := t.byID[id]; ok {
				m[n>>6] |= 1 << (n & 63)
			}
		})
	}
	return m
}

// verdict returns the bits of the candidates targeting sv that some value
// of the collection may match. key is the cache key: keyHeadLen bytes of
// head, the values each followed by a NUL, then the NUL flag. The result
// must not be modified.
func (t *skipTable) verdict(sv *skipVar, key []byte, nul bool, idxs *[]*textIndex) []uint64 {
	sh := &verdicts[sv.shard]
	on := verdictCacheOn.Load()
	if on {
		sh.mu.Lock()
		bits, hit := sh.m[string(key)]
		sh.mu.Unlock()
		if hit {
			if countStats {
				verdictHits.Add(1)
			}
			return bits
		}
		if countStats {
			verdictMisses.Add(1)
		}
	}
	ks := string(key)
	cs := &colState{ok: true, nul: nul}
	cs.base = newStage(ks[keyHeadLen:len(ks)-1], nul, idxs)
	bits := make([]uint64, t.words)
	for _, n := range sv.cands {
		if t.all[n].mayMatchValues(cs, idxs) {
			bits[n>>6] |= 1 << (n & 63)
		}
	}
	if on && len(ks)-keyHeadLen-1 <= maxCachedText {
		cost := len(ks) + 8*len(bits) + entryOverhead
		sh.mu.Lock()
		if sh.m == nil {
			sh.m = map[string][]uint64{}
		}
		if _, dup := sh.m[ks]; !dup {
			for k, v := range sh.m {
				if sh.bytes+cost <= verdictShardBytes {
					break
				}
				sh.bytes -= len(k) + 8*len(v) + entryOverhead
				delete(sh.m, k)
			}
			sh.m[ks] = bits
			sh.bytes += cost
		}
		sh.mu.Unlock()
	}
	return bits
}

// verdictCacheBytes returns the bytes charged to the cache (tests).
func verdictCacheBytes() (n, entries int) { //nolint:unused // the tests' view of the cache
	for i := range verdicts {
		sh := &verdicts[i]
		sh.mu.Lock()
		n += sh.bytes
		entries += len(sh.m)
		sh.mu.Unlock()
	}
	return n, entries
}

func orInto(dst, src []uint64) {
	for i := range dst {
		dst[i] |= src[i]
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
