package identity

import (
	"container/list"
	"sync"
	"time"
)

// ttlCache maps keys (token hashes, source prefixes) to values that
// expire, and holds at most max of them: when full, the entry used least
// recently goes, so memory is bounded whatever callers send, and a caller
// that puts many keys (tokens it can mint) evicts another's only when
// that one went unused for max of them. It is the one
// bounded TTL map of the package: the JWT verifier's token cache, and the
// TokenReview verifier's answers, rejections and per-source budgets each
// use their own instance, so entries of one kind never evict another's.
// It is safe for concurrent use.
type ttlCache[K comparable, V any] struct {
	mu    sync.Mutex
	m     map[K]*list.Element
	order *list.List // of *ttlEntry[K, V], least recently used first
	max   int
}

type ttlEntry[K comparable, V any] struct {
	key   K
	val   V
	until time.Time
}

// newTTLCache returns a cache of at most max entries (at least 1).
func newTTLCache[K comparable, V any](size int) *ttlCache[K, V] {
	return &ttlCache[K, V]{m: map[K]*list.Element{}, order: list.New(), max: max(size, 1)}
}

// get returns k's value unless it is absent or expired at now.
func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.m[k]
	if !ok {
		return zero, false
	}
	e := el.Value.(*ttlEntry[K, V])
	if !now.Before(e.until) {
		c.order.Remove(el)
		delete(c.m, k)
		return zero, false
	}
	c.order.MoveToBack(el)
	return e.val, true
}

// put stores v under k until until. When the cache is full, the entry
// used least recently goes (expired or not).
func (c *ttlCache[K, V]) put(k K, v V, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*ttlEntry[K, V])
		e.val, e.until = v, until
		c.order.MoveToBack(el)
		return
	}
	for c.order.Len() >= c.max {
		front := c.order.Front()
		c.order.Remove(front)
		delete(c.m, front.Value.(*ttlEntry[K, V]).key)
	}
	c.m[k] = c.order.PushBack(&ttlEntry[K, V]{key: k, val: v, until: until})
}

// len is the number of entries held, expired ones included until they
// are met.
func (c *ttlCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
