package zonelb

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// healthSet marks members healthy by index.
type healthSet []bool

func (h healthSet) Healthy(i int) bool { return h[i] }

func mustPool(t testing.TB, members []Member, o Options) *Pool {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(members, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// demo is acme/orders/dev of the local topology: two replicas in az-a, one in az-b.
var demo = []Member{{"127.0.0.1:9111", "az-a"}, {"127.0.0.1:9112", "az-a"}, {"127.0.0.1:9113", "az-b"}}

func TestDistribution900(t *testing.T) {
	p := mustPool(t, demo, Options{LocalZone: "az-a"})
	counts := make([]int, len(demo))
	for range 900 {
		i, out := p.Select(healthSet{true, true, true})
		if out != Local {
			t.Fatalf("outcome %v", out)
		}
		counts[i]++
	}
	if counts[0] < 449 || counts[0] > 451 || counts[1] < 449 || counts[1] > 451 || counts[2] != 0 {
		t.Fatalf("distribution %v, want 450 ± 1 on each az-a replica and none in az-b", counts)
	}
}

func TestSelectionTable(t *testing.T) {
	four := []Member{{"a1", "az-a"}, {"a2", "az-a"}, {"b1", "az-b"}, {"b2", "az-b"}, {"c1", "az-c"}, {"c2", "az-c"}}
	for _, tc := range []struct {
		name    string
		opts    Options
		healthy healthSet
		// want counts per member over 600 requests, ± tolerance
		want []int
		tol  int
		out  Outcome
	}{
		{"all healthy: local only", Options{LocalZone: "az-a"}, healthSet{true, true, true, true, true, true}, []int{300, 300, 0, 0, 0, 0}, 1, Local},
		{"one local down, threshold 0.5: stay local", Options{LocalZone: "az-a", LocalThreshold: 0.5}, healthSet{true, false, true, true, true, true}, []int{600, 0, 0, 0, 0, 0}, 0, Local},
		{"one local down, threshold 1: half spills to az-b", Options{LocalZone: "az-a"}, healthSet{true, false, true, true, true, true}, []int{300, 0, 150, 150, 0, 0}, 2, 0},
		{"local all down: az-b in order", Options{LocalZone: "az-a"}, healthSet{false, false, true, true, true, true}, []int{0, 0, 300, 300, 0, 0}, 1, Spill},
		{"local down, order c before b", Options{LocalZone: "az-a", ZoneOrder: []string{"az-c", "az-b"}}, healthSet{false, false, true, true, true, true}, []int{0, 0, 0, 0, 300, 300}, 1, Spill},
		{"local and b down: c", Options{LocalZone: "az-a", PanicThreshold: 0.3}, healthSet{false, false, false, false, true, true}, []int{0, 0, 0, 0, 300, 300}, 1, Spill},
		{"under panic threshold: everyone", Options{LocalZone: "az-a"}, healthSet{false, false, false, false, false, true}, []int{100, 100, 100, 100, 100, 100}, 1, Panic},
		{"no panic: the one healthy", Options{LocalZone: "az-a", NoPanic: true}, healthSet{false, false, false, false, false, true}, []int{0, 0, 0, 0, 0, 600}, 0, Spill},
		{"node zone without replicas", Options{LocalZone: "az-z"}, healthSet{true, true, true, true, true, true}, []int{300, 300, 0, 0, 0, 0}, 1, Spill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPool(t, four, tc.opts)
			counts := make([]int, len(four))
			for range 600 {
				i, out := p.Select(tc.healthy)
				if i < 0 {
					t.Fatalf("no selection (%v)", out)
				}
				if tc.out != 0 && out != tc.out {
					t.Fatalf("outcome %v, want %v", out, tc.out)
				}
				counts[i]++
			}
			for i := range counts {
				if d := counts[i] - tc.want[i]; d < -tc.tol || d > tc.tol {
					t.Fatalf("counts %v, want %v ± %d", counts, tc.want, tc.tol)
				}
			}
		})
	}
}

func TestEmptyAndUnhealthy(t *testing.T) {
	p := mustPool(t, nil, Options{LocalZone: "az-a"})
	if i, out := p.Select(healthSet{}); i != -1 || out != None {
		t.Fatalf("empty: %d %v", i, out)
	}
	p = mustPool(t, demo, Options{LocalZone: "az-a", NoPanic: true})
	if i, out := p.Select(healthSet{false, false, false}); i != -1 || out != Unhealthy {
		t.Fatalf("all down, no panic: %d %v", i, out)
	}
	if _, err := NewPool([]Member{{"", "az-a"}}, Options{}); err != ErrEmptyAddress {
		t.Fatalf("empty address: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{LocalThreshold: 1.5}, {LocalThreshold: -1}, {PanicThreshold: 1}, {PanicThreshold: -0.1},
		{LocalZone: "a", ZoneOrder: []string{"a"}}, {ZoneOrder: []string{"b", "b"}}, {ZoneOrder: []string{""}},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestPoolsAreIsolated: two tenants listing the same addresses have their own
// rotations; one tenant's traffic does not move the other's.
func TestPoolsAreIsolated(t *testing.T) {
	acme := mustPool(t, demo, Options{LocalZone: "az-a"})
	globex := mustPool(t, demo, Options{LocalZone: "az-a"})
	all := healthSet{true, true, true}
	for range 7 {
		acme.Select(all)
	}
	// globex's rotation starts at its own beginning, whatever acme did.
	seq := []int{}
	for range 4 {
		i, _ := globex.Select(all)
		seq = append(seq, i)
	}
	if fmt.Sprint(seq) != "[0 1 0 1]" {
		t.Fatalf("globex's rotation after acme's traffic: %v", seq)
	}
}

// FuzzSelect: whatever the health pattern and options, a selection is a member
// of the pool, healthy unless in panic mode, and of the local zone when any
// local member is healthy and the local threshold is met.
func FuzzSelect(f *testing.F) {
	f.Add(uint64(0b111), uint8(3), uint8(2), uint16(1000), uint16(500), false)
	f.Add(uint64(0), uint8(6), uint8(3), uint16(500), uint16(0), true)
	f.Fuzz(func(t *testing.T, mask uint64, n, zones uint8, local, panic uint16, noPanic bool) {
		n %= 40
		zones = zones%5 + 1
		members := make([]Member, n)
		h := make(healthSet, n)
		for i := range members {
			members[i] = Member{Address: fmt.Sprintf("10.0.0.%d:80", i), Zone: fmt.Sprintf("z%d", i%int(zones))}
			h[i] = mask&(1<<(i%64)) != 0
		}
		o := Options{LocalZone: "z0", LocalThreshold: float64(local%1001) / 1000, PanicThreshold: float64(panic%1000) / 1000, NoPanic: noPanic}
		if o.Validate() != nil {
			return
		}
		p, err := NewPool(members, o)
		if err != nil {
			t.Fatal(err)
		}
		// SelectBits, on a twin pool with the same health as a bit set,
		// must choose exactly as SelectFrom does.
		twin, _ := NewPool(members, o)
		var bits uint64
		for i, ok := range h {
			if ok {
				bits |= 1 << uint(i)
			}
		}
		for range 20 {
			i, out := p.Select(h)
			if bi, bout := twin.SelectBits(bits, 0); bi != i || bout != out {
				t.Fatalf("SelectBits gave %d %v, SelectFrom %d %v", bi, bout, i, out)
			}
			switch {
			case n == 0:
				if i != -1 || out != None {
					t.Fatalf("empty pool gave %d %v", i, out)
				}
				return
			case out == Unhealthy:
				for _, ok := range h {
					if ok {
						t.Fatal("unhealthy outcome with a healthy member")
					}
				}
				continue
			}
			if i < 0 || i >= int(n) {
				t.Fatalf("selected %d outside the pool of %d", i, n)
			}
			if out != Panic && !h[i] {
				t.Fatalf("selected unhealthy member %d (%v)", i, out)
			}
			if out == Spill && members[i].Zone == "z0" {
				t.Fatalf("spill to the local zone")
			}
			if out == Local && members[i].Zone != "z0" {
				t.Fatalf("local selection in zone %s", members[i].Zone)
			}
		}
	})
}

// fleet builds one pool per tenant, as the registry holds them.
func fleet(tenants int) []*Pool {
	ps := make([]*Pool, tenants)
	o := Options{LocalZone: "az-a"}
	o.Validate()
	for i := range ps {
		ps[i], _ = NewPool(demo, o)
	}
	return ps
}

// selectBatch runs 4096 selections on random tenants' pools.
func selectBatch(pools []*Pool, idx []int, h Health) {
	for _, i := range idx {
		pools[i].Select(h)
	}
}

// BenchmarkSelect measures selections in fleets of 10 and 100,000 tenants,
// alternating batches side by side, for two request mixes: "same", the same
// 10 tenants' pools in both fleets (what the number of tenants alone costs),
// and "spread", 4,096 random tenants' pools (the working set grows with the
// fleet: cache and TLB misses). It reports each cost and the ratios, and
// fails on any allocation. modules/neo's BenchmarkSelection measures the
// whole selection policy the reverse proxy calls.
func BenchmarkSelect(b *testing.B) {
	small, large := fleet(10), fleet(100000)
	var h Health = healthSet{true, true, true} // boxed once, as a caller holds it
	rng := rand.New(rand.NewSource(1))
	sameSmall, sameLarge := make([]int, 4096), make([]int, 4096)
	spreadSmall, spreadLarge := make([]int, 4096), make([]int, 4096)
	for i := range sameSmall {
		sameSmall[i] = rng.Intn(len(small))
		sameLarge[i] = sameSmall[i] // the same tenants, in the large fleet
		spreadSmall[i], spreadLarge[i] = rng.Intn(len(small)), rng.Intn(len(large))
	}
	if a := testing.AllocsPerRun(10, func() { selectBatch(large, spreadLarge, h) }); a != 0 {
		b.Fatalf("%v allocations per batch of selections", a)
	}
	runs := []struct {
		pools []*Pool
		idx   []int
		d     time.Duration
	}{{small, sameSmall, 0}, {large, sameLarge, 0}, {small, spreadSmall, 0}, {large, spreadLarge, 0}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, k := range rng.Perm(len(runs)) { // a new order every round
			t0 := time.Now()
			selectBatch(runs[k].pools, runs[k].idx, h)
			runs[k].d += time.Since(t0)
		}
	}
	per := func(k int) float64 { return float64(runs[k].d.Nanoseconds()) / float64(b.N*4096) }
	b.ReportMetric(per(0), "ns/select-same@10")
	b.ReportMetric(per(1), "ns/select-same@100k")
	b.ReportMetric(per(2), "ns/select-spread@10")
	b.ReportMetric(per(3), "ns/select-spread@100k")
	b.ReportMetric(per(1)/per(0), "ratio-same")
	b.ReportMetric(per(3)/per(2), "ratio-spread")
	b.ReportMetric(0, "allocs/select")
}
