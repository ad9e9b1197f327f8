// Package zonelb is caddy-neo's zone-aware, tenant-isolated round-robin
// selection: the algorithm behind the `neo` upstreams of the reverse proxy.
//
// A Pool holds the replicas of one (tenant, stage, app) or one platform
// service, grouped by availability zone in preference order: the node's own
// zone first, then the failover zones in their configured order. Each pool has
// its own rotation positions (one per zone, one for panic mode), so one
// tenant's traffic never moves another tenant's rotation, even when they list
// the same replica address.
//
// Selection, for each request:
//  1. Panic: when the healthy share of the whole pool is below PanicThreshold
//     (default 50%), health is ignored and the request goes round robin over
//     all replicas (Envoy's panic mode: better to try every replica than to
//     pile all traffic on the few left).
//  2. Local: when the healthy share of the local zone is at least
//     LocalThreshold (default 1: all of them), round robin over the local
//     zone's healthy replicas.
//  3. Spill: otherwise the local zone keeps a share of the traffic
//     proportional to its health (healthy share / LocalThreshold), and the
//     rest goes round robin to the healthy replicas of the first other zone,
//     in order, that has any.
//
// Select is O(replicas in the pool), independent of the number of tenants,
// and does not allocate.
package zonelb

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Options configure selection.
type Options struct {
	// LocalZone is the zone of this node. Replicas in it are preferred.
	// Select takes the local zone per request; NewPool uses this one only to
	// order the zones (local first).
	LocalZone string
	// ZoneOrder is the failover order of the zones. Zones not listed follow,
	// in the order their replicas first appear.
	ZoneOrder []string
	// LocalThreshold is the healthy share of the local zone below which
	// traffic starts to spill to other zones, in (0, 1]. Default 1: any
	// unhealthy local replica moves a proportional share of traffic away.
	LocalThreshold float64
	// PanicThreshold is the healthy share of the whole pool below which
	// health is ignored, in [0, 1). Default 0.5. Zero disables panic mode.
	PanicThreshold float64
	// NoPanic disables panic mode (PanicThreshold 0 would mean "default").
	NoPanic bool
}

// Validate checks the options and fills defaults.
func (o *Options) Validate() error {
	if o.LocalThreshold == 0 {
		o.LocalThreshold = 1
	}
	if o.LocalThreshold < 0 || o.LocalThreshold > 1 {
		return fmt.Errorf("local_threshold: want a share in (0, 1], got %v", o.LocalThreshold)
	}
	if o.PanicThreshold == 0 && !o.NoPanic {
		o.PanicThreshold = 0.5
	}
	if o.NoPanic {
		o.PanicThreshold = 0
	}
	if o.PanicThreshold < 0 || o.PanicThreshold >= 1 {
		return fmt.Errorf("panic_threshold: want a share in [0, 1), got %v", o.PanicThreshold)
	}
	seen := map[string]bool{o.LocalZone: true}
	for i, z := range o.ZoneOrder {
		if z == "" || seen[z] {
			return fmt.Errorf("zone_order[%d]: %q is empty, the local zone, or listed twice", i, z)
		}
		seen[z] = true
	}
	return nil
}

// Member is one replica of a pool.
type Member struct {
	Address string
	Zone    string
}

// Outcome says how a request was placed.
type Outcome uint8

const (
	// None: the pool is empty.
	None Outcome = iota
	// Local: a healthy replica of the local zone.
	Local
	// Spill: a healthy replica of another zone.
	Spill
	// Panic: too few healthy replicas; any replica, health ignored.
	Panic
	// Unhealthy: no replica is healthy and panic mode is off.
	Unhealthy
)

func (o Outcome) String() string {
	return [...]string{"none", "local", "spill", "panic", "unhealthy"}[o]
}

// Health tells whether the pool's member i is healthy. Implement it on a
// pointer or slice type so that passing it does not allocate.
type Health interface {
	Healthy(i int) bool
}

// Pool is the replicas of one tenant's app in one stage (or one platform
// service), grouped by zone in preference order. Its rotation state is its own.
type Pool struct {
	members []Member
	// memberZone[i] is the index in zones of member i's zone.
	memberZone []uint8
	zones      []zone // in preference order: the node's zone, then ZoneOrder, then by appearance
	local      float64
	panic      float64
	allPos     atomic.Uint32
	spill      atomic.Uint64
}

// ZoneIndex returns the index of the named zone in the pool, or -1.
func (p *Pool) ZoneIndex(name string) int {
	for i := range p.zones {
		if p.zones[i].name == name {
			return i
		}
	}
	return -1
}

type zone struct {
	name    string
	members []int32
	pos     atomic.Uint32
}

// ErrEmptyAddress is returned for a member without an address.
var ErrEmptyAddress = errors.New("replica without an address")

// ErrTooManyZones is returned for a pool spread over more than 255 zones.
var ErrTooManyZones = errors.New("replicas in more than 255 zones")

// NewPool builds a pool. o must have been validated.
func NewPool(members []Member, o Options) (*Pool, error) {
	p := &Pool{members: append([]Member(nil), members...), local: o.LocalThreshold, panic: o.PanicThreshold}
	order := []string{o.LocalZone}
	order = append(order, o.ZoneOrder...)
	idx := map[string]int{}
	for i, z := range order {
		idx[z] = i
	}
	for _, m := range members {
		if m.Address == "" {
			return nil, ErrEmptyAddress
		}
		if _, ok := idx[m.Zone]; !ok {
			idx[m.Zone] = len(order)
			order = append(order, m.Zone)
		}
	}
	p.zones = make([]zone, len(order))
	for i, z := range order {
		p.zones[i].name = z
	}
	if len(order) > 255 {
		return nil, ErrTooManyZones
	}
	p.memberZone = make([]uint8, len(members))
	for i, m := range members {
		z := &p.zones[idx[m.Zone]]
		z.members = append(z.members, int32(i))
		p.memberZone[i] = uint8(idx[m.Zone])
	}
	return p, nil
}

// Len returns the number of members.
func (p *Pool) Len() int { return len(p.members) }

// Member returns member i.
func (p *Pool) Member(i int) Member { return p.members[i] }

// Zones returns the number of zones in the pool.
func (p *Pool) Zones() int { return len(p.zones) }

// ZoneName returns the name of zone i (0 <= i < Zones()).
func (p *Pool) ZoneName(i int) string { return p.zones[i].name }

// MemberZone returns the index (as ZoneIndex gives it) of member i's zone.
func (p *Pool) MemberZone(i int) int { return int(p.memberZone[i]) }

// Select picks a member for a request in the pool's first zone (the node's
// zone given to NewPool), or returns -1 with None (empty pool) or Unhealthy.
func (p *Pool) Select(h Health) (int, Outcome) { return p.SelectFrom(h, 0) }

// SelectFrom picks a member for a request whose local zone is the pool's zone
// number local (ZoneIndex; -1 when the pool has no replica in that zone):
// that zone first, then the others in the pool's order.
func (p *Pool) SelectFrom(h Health, local int) (int, Outcome) { return selectFrom(p, h, local) }

// SelectBits is SelectFrom with the members' health as a bit set (bit i set:
// member i is healthy), for pools of at most 64 members (MaxBits). Unlike an
// interface, the bit set never escapes to the heap: a selection does not
// allocate.
func (p *Pool) SelectBits(healthy uint64, local int) (int, Outcome) {
	return selectFrom(p, bitHealth(healthy), local)
}

// MaxBits is the largest pool SelectBits serves.
const MaxBits = 64

type bitHealth uint64

func (b bitHealth) Healthy(i int) bool { return i < MaxBits && b>>uint(i)&1 == 1 }

func selectFrom[H Health](p *Pool, h H, local int) (int, Outcome) {
	n := len(p.members)
	if n == 0 {
		return -1, None
	}
	healthy := 0
	for i := 0; i < n; i++ {
		if h.Healthy(i) {
			healthy++
		}
	}
	if healthy == 0 && p.panic == 0 {
		return -1, Unhealthy
	}
	if float64(healthy) < p.panic*float64(n) {
		return int(p.allPos.Add(1)-1) % n, Panic
	}
	var loc *zone
	locHealthy := 0
	if local >= 0 && local < len(p.zones) {
		loc = &p.zones[local]
		for _, i := range loc.members {
			if h.Healthy(int(i)) {
				locHealthy++
			}
		}
	}
	if locHealthy > 0 {
		share := float64(locHealthy) / float64(len(loc.members))
		if share >= p.local {
			return pick(loc, h, locHealthy), Local
		}
		// Keep share/threshold of the traffic local and spill the rest,
		// spread evenly (request c stays local when c*keep/1000 steps up).
		keep := uint64(share / p.local * 1000)
		c := p.spill.Add(1) - 1
		if (c+1)*keep/1000 != c*keep/1000 {
			return pick(loc, h, locHealthy), Local
		}
	}
	for zi := 0; zi < len(p.zones); zi++ {
		if zi == local {
			continue
		}
		z := &p.zones[zi]
		zh := 0
		for _, i := range z.members {
			if h.Healthy(int(i)) {
				zh++
			}
		}
		if zh > 0 {
			return pick(z, h, zh), Spill
		}
	}
	if locHealthy > 0 {
		return pick(loc, h, locHealthy), Local
	}
	return -1, Unhealthy // unreachable: healthy > 0 means some zone has one
}

// pick is round robin over the zone's healthy members: the position advances
// by one per request, and the k-th healthy member is chosen.
func pick[H Health](z *zone, h H, healthy int) int {
	k := int(z.pos.Add(1)-1) % healthy
	for _, i := range z.members {
		if h.Healthy(int(i)) {
			if k == 0 {
				return int(i)
			}
			k--
		}
	}
	return int(z.members[0])
}
