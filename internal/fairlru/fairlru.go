// Package fairlru is a bounded cache shared by several owners (workloads,
// callers) in which no owner can evict another's entries while it holds
// more than that one: when the cache is full, a new entry evicts the least
// recently used entry of the owner holding the most.
//
// The rule, exactly: a full cache evicts, before it adds a new key, the
// least recently used entry of the owner holding the most entries (the new
// key not counted). Among owners holding equally many, the new key's own
// owner goes first; then the owner used least recently (a hit, an add, or
// an entry lost counts as a use, so equal owners that are not used lose
// entries in turn). So:
//
//   - an owner holding fewer entries than another never loses one to it:
//     one owner adding many keys evicts the others' only while it grows to
//     their size (max-min fairness: with n owners, each keeps at least
//     its 1/n of the cache, or what it uses if that is less);
//   - a cache with one owner, or with one entry per owner, is a plain LRU;
//   - inside an owner's entries, the least recently used goes first.
//
// Every operation is O(1): entries are kept in a list per owner, and
// owners in a list per count of entries held, most recently used first.
// A Cache is not safe for concurrent use; callers hold their own lock.
package fairlru

// Cache is a bounded map from K to V in which each entry counts against
// the owner O that added it (see the package comment). The zero value is
// not usable; call New.
type Cache[K comparable, V any, O comparable] struct {
	max     int
	entries map[K]*entry[K, V, O]
	owners  map[O]*owner[K, V, O]
	// buckets[n] is the ring of owners holding n entries (n ≥ 1), most
	// recently used first; buckets[0] is unused. top is the largest n
	// whose ring is not empty (0: the cache is empty).
	buckets []*owner[K, V, O]
	top     int
}

type entry[K comparable, V any, O comparable] struct {
	key        K
	val        V
	own        *owner[K, V, O]
	prev, next *entry[K, V, O] // in own's ring
}

type owner[K comparable, V any, O comparable] struct {
	id         O
	n          int             // entries held
	ring       entry[K, V, O]  // sentinel: ring.next is the most recently used
	prev, next *owner[K, V, O] // in buckets[n]
}

// Evicted is an entry a full cache dropped to make room.
type Evicted[K comparable, V any, O comparable] struct {
	Key   K
	Value V
	Owner O
}

// New returns an empty cache of at most max entries (at least 1).
func New[K comparable, V any, O comparable](size int) *Cache[K, V, O] {
	return &Cache[K, V, O]{
		max:     max(size, 1),
		entries: map[K]*entry[K, V, O]{},
		owners:  map[O]*owner[K, V, O]{},
		buckets: []*owner[K, V, O]{nil},
	}
}

// Max returns the cache's bound.
func (c *Cache[K, V, O]) Max() int { return c.max }

// Len returns the number of entries.
func (c *Cache[K, V, O]) Len() int { return len(c.entries) }

// Held returns the number of entries o holds.
func (c *Cache[K, V, O]) Held(o O) int {
	if ow := c.owners[o]; ow != nil {
		return ow.n
	}
	return 0
}

// Owners returns the number of owners holding an entry.
func (c *Cache[K, V, O]) Owners() int { return len(c.owners) }

// Get returns k's value and marks it, and its owner, used.
func (c *Cache[K, V, O]) Get(k K) (V, bool) {
	e := c.entries[k]
	if e == nil {
		var zero V
		return zero, false
	}
	c.touch(e)
	return e.val, true
}

// Peek returns k's value without marking anything used.
func (c *Cache[K, V, O]) Peek(k K) (V, bool) {
	if e := c.entries[k]; e != nil {
		return e.val, true
	}
	var zero V
	return zero, false
}

// OwnerOf returns the owner k's entry counts against.
func (c *Cache[K, V, O]) OwnerOf(k K) (O, bool) {
	if e := c.entries[k]; e != nil {
		return e.own.id, true
	}
	var zero O
	return zero, false
}

// Add sets k's value. A key already cached keeps its owner (a renewal, or
// a hit by another owner, never moves an entry into another's share) and
// is marked used. A new key counts against o; when the cache is full, one
// entry is evicted first (the package comment's rule) and returned with
// evicted true.
func (c *Cache[K, V, O]) Add(k K, o O, v V) (ev Evicted[K, V, O], evicted bool) {
	if e := c.entries[k]; e != nil {
		e.val = v
		c.touch(e)
		return ev, false
	}
	if len(c.entries) >= c.max {
		ev, evicted = c.evict(o), true
	}
	ow := c.owners[o]
	if ow == nil {
		ow = &owner[K, V, O]{id: o}
		ow.ring.next, ow.ring.prev = &ow.ring, &ow.ring
		c.owners[o] = ow
	} else {
		c.unlinkOwner(ow)
	}
	e := &entry[K, V, O]{key: k, val: v, own: ow}
	pushEntry(&ow.ring, e)
	c.entries[k] = e
	ow.n++
	c.linkOwner(ow)
	return ev, evicted
}

// Remove drops k and returns its value.
func (c *Cache[K, V, O]) Remove(k K) (V, bool) {
	e := c.entries[k]
	if e == nil {
		var zero V
		return zero, false
	}
	c.remove(e)
	return e.val, true
}

// DeleteFunc drops every entry for which del returns true.
func (c *Cache[K, V, O]) DeleteFunc(del func(K, V) bool) {
	for k, e := range c.entries {
		if del(k, e.val) {
			c.remove(e)
		}
	}
}

// Clear drops every entry.
func (c *Cache[K, V, O]) Clear() {
	clear(c.entries)
	clear(c.owners)
	c.buckets = c.buckets[:1]
	c.top = 0
}

// evict drops the entry the rule chooses for a new key of owner o.
func (c *Cache[K, V, O]) evict(o O) Evicted[K, V, O] {
	victim := c.owners[o]
	if victim == nil || victim.n != c.top {
		s := c.buckets[c.top]
		victim = s.prev // least recently used among the largest
	}
	e := victim.ring.prev
	c.remove(e)
	return Evicted[K, V, O]{Key: e.key, Value: e.val, Owner: victim.id}
}

// remove unlinks e; its owner counts as used (it moves to the front of
// its new count's ring), so owners of equal size lose entries in turn.
func (c *Cache[K, V, O]) remove(e *entry[K, V, O]) {
	delete(c.entries, e.key)
	e.prev.next, e.next.prev = e.next, e.prev
	ow := e.own
	c.unlinkOwner(ow)
	ow.n--
	if ow.n == 0 {
		delete(c.owners, ow.id)
	} else {
		c.linkOwner(ow)
	}
	// Counts change by one at a time: when the largest ring empties, the
	// owner that left it is in the ring below (or gone, from 1).
	if c.top > 0 && c.buckets[c.top].next == c.buckets[c.top] {
		c.top--
	}
}

// touch marks e, and its owner, most recently used.
func (c *Cache[K, V, O]) touch(e *entry[K, V, O]) {
	ow := e.own
	e.prev.next, e.next.prev = e.next, e.prev
	pushEntry(&ow.ring, e)
	c.unlinkOwner(ow)
	c.linkOwner(ow)
}

func pushEntry[K comparable, V any, O comparable](ring, e *entry[K, V, O]) {
	e.prev, e.next = ring, ring.next
	ring.next.prev = e
	ring.next = e
}

// unlinkOwner takes ow out of its count's ring; the caller links it
// again (or drops it) and keeps top right.
func (c *Cache[K, V, O]) unlinkOwner(ow *owner[K, V, O]) {
	ow.prev.next, ow.next.prev = ow.next, ow.prev
	ow.prev, ow.next = nil, nil
}

// linkOwner puts ow at the front of the ring of its count.
func (c *Cache[K, V, O]) linkOwner(ow *owner[K, V, O]) {
	for len(c.buckets) <= ow.n {
		s := &owner[K, V, O]{}
		s.prev, s.next = s, s
		c.buckets = append(c.buckets, s)
	}
	s := c.buckets[ow.n]
	ow.prev, ow.next = s, s.next
	s.next.prev = ow
	s.next = ow
	c.top = max(c.top, ow.n)
}
