package wafaccel

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestVerdictCache checks that the verdict cache changes nothing: for random
// requests built from the CRS regression payloads, the rules skipping
// removes are the same with the cache off, on a first pass with it on
// (misses) and on a second pass (answers from the cache). Two requests
// whose argument values join to the same text — one value holding a NUL,
// and two values — are among them.
func TestVerdictCache(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 100
	}
	reqs := randomRequests(t, n, 11)
	reqs = append(reqs,
		request{Method: "GET", URI: "/a?x=a%00b", Version: "HTTP/1.1", Headers: [][2]string{{"Host", "example.com"}}},
		request{Method: "GET", URI: "/a?x=a&x=b", Version: "HTTP/1.1", Headers: [][2]string{{"Host", "example.com"}}},
		request{Method: "GET", URI: "/a?x=a%00b", Version: "HTTP/1.1", Headers: [][2]string{{"Host", "example.com"}}},
	)
	w := newCRSWAFSkip(t, true)
	countStats = true
	defer func() {
		countStats = false
		verdictCacheOn.Store(true)
	}()
	run := func(r request) []int { return removedIDs(w, r) }
	verdictCacheOn.Store(false)
	off := make([][]int, len(reqs))
	for i, r := range reqs {
		off[i] = run(r)
	}
	verdictCacheOn.Store(true)
	h0, m0 := verdictHits.Load(), verdictMisses.Load()
	diffs := 0
	for pass := 1; pass <= 2; pass++ {
		for i, r := range reqs {
			if got := run(r); !slices.Equal(got, off[i]) {
				diffs++
				if diffs <= 5 {
					t.Errorf("pass %d, request %d %s %q: removed %d rules with the cache, %d without; only with: %v, only without: %v",
						pass, i, r.Method, r.URI, len(got), len(off[i]), minus(got, off[i]), minus(off[i], got))
				}
			}
		}
	}
	hits, misses := verdictHits.Load()-h0, verdictMisses.Load()-m0
	t.Logf("%d requests twice: %d verdicts from the cache, %d computed", len(reqs), hits, misses)
	if misses == 0 || hits < misses {
		t.Errorf("the second pass should be answered from the cache: %d hits, %d misses", hits, misses)
	}
	if len(off[len(off)-1]) == 0 {
		t.Error("nothing removed for the NUL request: the test does not reach the cache")
	}
}

// removedIDs runs r through w and returns, sorted, the rules rule skipping
// removed (no other transaction may run meanwhile).
func removedIDs(w *crsWAF, r request) []int {
	var removed []int
	onRemove = func(id int) { removed = append(removed, id) }
	defer func() { onRemove = nil }()
	w.matchedIDs(r)
	slices.Sort(removed)
	return removed
}

func minus(a, b []int) []int {
	var out []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestVerdictCacheBounded floods the cache with distinct texts of every
// size up to the largest kept: it stays within its byte budget, and a text
// too long to keep is not kept.
func TestVerdictCacheBounded(t *testing.T) {
	tb := &skipTable{}
	tb.finalize()
	var idxs []*textIndex
	for i := 0; i < 20000; i++ {
		sv := &skipVar{shard: uint32(i % verdictShards)}
		key := append(tb.keyHead[:], 0, 0)
		key = append(key, fmt.Sprintf("%d-%s", i, strings.Repeat("v", i%maxCachedText))...)
		key = append(key, 0, 0)
		tb.verdict(sv, key, false, &idxs)
	}
	bytes, entries := verdictCacheBytes()
	t.Logf("%d entries, %d bytes charged", entries, bytes)
	if bytes > verdictShards*verdictShardBytes {
		t.Errorf("cache holds %d bytes, budget %d", bytes, verdictShards*verdictShardBytes)
	}
	if entries == 0 {
		t.Error("nothing cached")
	}
	sv := &skipVar{shard: 3}
	key := append(tb.keyHead[:], 0, 0)
	key = append(key, strings.Repeat("w", maxCachedText+1)...)
	key = append(key, 0, 0)
	tb.verdict(sv, key, false, &idxs)
	sh := &verdicts[3]
	sh.mu.Lock()
	_, kept := sh.m[string(key)]
	sh.mu.Unlock()
	if kept {
		t.Error("a text longer than maxCachedText was kept")
	}
	for _, x := range idxs {
		x.reset()
		indexPool.Put(x)
	}
}

var fuzzVerdictWAF = struct {
	once sync.Once
	w    *crsWAF
}{}

// FuzzVerdictCache feeds arbitrary values (query argument name and value,
// a header, a cookie, a form body) through the CRS with rule skipping: the
// rules removed are the same with the verdict cache off, with it on (a
// first time) and with it on again (answered from the cache).
func FuzzVerdictCache(f *testing.F) {
	for _, s := range []string{"", "a", "a\x00b", "<script>alert(1)</script>", "1' or '1'='1", "../../etc/passwd",
		"blue running shoes", "%00", "\xff\xfe", "$(whoami)", "SELECT * FROM users", "ｓｃｒｉｐｔ"} {
		f.Add(s, "q", s)
	}
	f.Fuzz(func(t *testing.T, value, name, other string) {
		fuzzVerdictWAF.once.Do(func() { fuzzVerdictWAF.w = newCRSWAFSkip(t, true) })
		w := fuzzVerdictWAF.w
		if w == nil {
			t.Skip("WAF not built")
		}
		q := url.Values{}
		q.Add(name, value)
		q.Add("x", other)
		r := request{Method: "POST", URI: "/api/" + url.PathEscape(other) + "?" + q.Encode(), Version: "HTTP/1.1",
			Headers: [][2]string{{"Host", "example.com"}, {"User-Agent", strings.ToValidUTF8(value, "?")},
				{"Cookie", "sid=" + url.QueryEscape(other)}, {"Content-Type", "application/x-www-form-urlencoded"}},
			Body: []byte(q.Encode())}
		defer verdictCacheOn.Store(true)
		run := func() []int { return removedIDs(w, r) }
		verdictCacheOn.Store(false)
		off := run()
		verdictCacheOn.Store(true)
		first, second := run(), run()
		if !slices.Equal(first, off) || !slices.Equal(second, off) {
			t.Fatalf("removed without the cache %v, with it %v then %v", off, first, second)
		}
	})
}
