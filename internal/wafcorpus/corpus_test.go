package wafcorpus

import (
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// TestBenignDeterministic: the corpus is a function of the seed, has at
// least 1,000 requests of every kind Counts lists, and another seed gives
// another corpus.
func TestBenignDeterministic(t *testing.T) {
	sum := func(seed uint64) [32]byte {
		b, err := json.Marshal(Benign(seed))
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	if sum(1) != sum(1) {
		t.Fatal("two corpora of seed 1 differ")
	}
	if sum(1) == sum(2) {
		t.Fatal("seeds 1 and 2 give the same corpus")
	}
	c := Benign(1)
	if len(c) < 1000 {
		t.Fatalf("%d requests, want at least 1000", len(c))
	}
	kinds := map[string]int{}
	for _, r := range c {
		kinds[r.Kind]++
		if r.Method == "" || r.Target == "" || r.Target[0] != '/' {
			t.Fatalf("bad request %+v", r)
		}
	}
	for _, k := range Counts {
		if kinds[k.Kind] != k.N {
			t.Errorf("%s: %d requests, want %d", k.Kind, kinds[k.Kind], k.N)
		}
	}
}
