package neo

import (
	"hash/maphash"
	"math/bits"
)

// pmap is an immutable (persistent) hash map from string to V: a flat root
// table of 4,096 slots (the top 12 bits of the hash) over hash array mapped
// tries with 32-way nodes. Get touches the root slot and about
// 1 + log32(n/4096) nodes (one or two up to a million entries), close to a
// Go map's memory accesses; With and Without copy the root table (32 KiB)
// and the nodes on one path, so a change costs the same whatever the map's
// size, and every older version stays valid and unchanged for its readers.
type pmap[V any] struct {
	root *[prootSize]*pnode[V]
	size int
}

type pnode[V any] struct {
	bitmap  uint32
	entries []pentry[V]
}

type pentry[V any] struct {
	hash  uint64
	key   string
	val   V
	child *pnode[V]
}

const (
	prootBits = 12
	prootSize = 1 << prootBits
	pbits     = 5
	pmask     = 1<<pbits - 1
	pdepth    = 64 // bits of hash consumed; beyond it nodes hold collision lists
)

var pseed = maphash.MakeSeed()

func phash(key string) uint64 { return maphash.String(pseed, key) }

// Len returns the number of entries.
func (m pmap[V]) Len() int { return m.size }

// Get returns the value for key.
func (m pmap[V]) Get(key string) (V, bool) {
	var zero V
	if m.root == nil {
		return zero, false
	}
	h := phash(key)
	n := m.root[h>>(64-prootBits)]
	if n == nil {
		return zero, false
	}
	for shift := uint(0); ; shift += pbits {
		if shift >= pdepth {
			for i := range n.entries {
				if n.entries[i].key == key {
					return n.entries[i].val, true
				}
			}
			return zero, false
		}
		bit := uint32(1) << ((h >> shift) & pmask)
		if n.bitmap&bit == 0 {
			return zero, false
		}
		e := &n.entries[bits.OnesCount32(n.bitmap&(bit-1))]
		if e.child != nil {
			n = e.child
			continue
		}
		if e.key == key {
			return e.val, true
		}
		return zero, false
	}
}

// With returns a map holding key → val in addition (or in place of the old value).
func (m pmap[V]) With(key string, val V) pmap[V] {
	h := phash(key)
	slot := h >> (64 - prootBits)
	root := new([prootSize]*pnode[V])
	if m.root != nil {
		*root = *m.root
	}
	n := root[slot]
	if n == nil {
		n = &pnode[V]{}
	}
	nn, added := n.with(pentry[V]{hash: h, key: key, val: val}, 0)
	root[slot] = nn
	size := m.size
	if added {
		size++
	}
	return pmap[V]{root: root, size: size}
}

func (n *pnode[V]) with(e pentry[V], shift uint) (*pnode[V], bool) {
	if shift >= pdepth {
		c := &pnode[V]{entries: make([]pentry[V], len(n.entries), len(n.entries)+1)}
		copy(c.entries, n.entries)
		for i := range c.entries {
			if c.entries[i].key == e.key {
				c.entries[i] = e
				return c, false
			}
		}
		c.entries = append(c.entries, e)
		return c, true
	}
	bit := uint32(1) << ((e.hash >> shift) & pmask)
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	if n.bitmap&bit == 0 {
		c := &pnode[V]{bitmap: n.bitmap | bit, entries: make([]pentry[V], len(n.entries)+1)}
		copy(c.entries, n.entries[:pos])
		c.entries[pos] = e
		copy(c.entries[pos+1:], n.entries[pos:])
		return c, true
	}
	c := &pnode[V]{bitmap: n.bitmap, entries: make([]pentry[V], len(n.entries))}
	copy(c.entries, n.entries)
	old := n.entries[pos]
	switch {
	case old.child != nil:
		child, added := old.child.with(e, shift+pbits)
		c.entries[pos] = pentry[V]{child: child}
		return c, added
	case old.key == e.key:
		c.entries[pos] = e
		return c, false
	default:
		child := &pnode[V]{}
		child, _ = child.with(old, shift+pbits)
		child, _ = child.with(e, shift+pbits)
		c.entries[pos] = pentry[V]{child: child}
		return c, true
	}
}

// withInPlace is With for a map nobody else can see yet (while building a
// first snapshot): the root table is changed in place instead of copied.
func (m pmap[V]) withInPlace(key string, val V) pmap[V] {
	if m.root == nil {
		m.root = new([prootSize]*pnode[V])
	}
	h := phash(key)
	slot := h >> (64 - prootBits)
	n := m.root[slot]
	if n == nil {
		n = &pnode[V]{}
	}
	nn, added := n.with(pentry[V]{hash: h, key: key, val: val}, 0)
	m.root[slot] = nn
	if added {
		m.size++
	}
	return m
}

// Without returns a map without key.
func (m pmap[V]) Without(key string) pmap[V] {
	if m.root == nil {
		return m
	}
	h := phash(key)
	slot := h >> (64 - prootBits)
	n := m.root[slot]
	if n == nil {
		return m
	}
	nn, removed := n.without(key, h, 0)
	if !removed {
		return m
	}
	root := new([prootSize]*pnode[V])
	*root = *m.root
	if len(nn.entries) == 0 {
		nn = nil
	}
	root[slot] = nn
	return pmap[V]{root: root, size: m.size - 1}
}

func (n *pnode[V]) without(key string, h uint64, shift uint) (*pnode[V], bool) {
	if shift >= pdepth {
		for i := range n.entries {
			if n.entries[i].key == key {
				c := &pnode[V]{entries: make([]pentry[V], 0, len(n.entries)-1)}
				c.entries = append(c.entries, n.entries[:i]...)
				c.entries = append(c.entries, n.entries[i+1:]...)
				return c, true
			}
		}
		return n, false
	}
	bit := uint32(1) << ((h >> shift) & pmask)
	if n.bitmap&bit == 0 {
		return n, false
	}
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	old := n.entries[pos]
	if old.child != nil {
		child, removed := old.child.without(key, h, shift+pbits)
		if !removed {
			return n, false
		}
		c := &pnode[V]{bitmap: n.bitmap, entries: make([]pentry[V], len(n.entries))}
		copy(c.entries, n.entries)
		switch {
		case len(child.entries) == 0:
			return n.remove(bit, pos), true
		case len(child.entries) == 1 && child.entries[0].child == nil:
			c.entries[pos] = child.entries[0] // pull a lone leaf up
		default:
			c.entries[pos] = pentry[V]{child: child}
		}
		return c, true
	}
	if old.key != key {
		return n, false
	}
	return n.remove(bit, pos), true
}

func (n *pnode[V]) remove(bit uint32, pos int) *pnode[V] {
	c := &pnode[V]{bitmap: n.bitmap &^ bit, entries: make([]pentry[V], 0, len(n.entries)-1)}
	c.entries = append(c.entries, n.entries[:pos]...)
	c.entries = append(c.entries, n.entries[pos+1:]...)
	return c
}

// Range calls f for every entry in an unspecified order until f returns false.
func (m pmap[V]) Range(f func(string, V) bool) {
	if m.root == nil {
		return
	}
	for _, n := range m.root {
		if n != nil && !n.rng(f) {
			return
		}
	}
}

func (n *pnode[V]) rng(f func(string, V) bool) bool {
	for i := range n.entries {
		e := &n.entries[i]
		if e.child != nil {
			if !e.child.rng(f) {
				return false
			}
		} else if !f(e.key, e.val) {
			return false
		}
	}
	return true
}
