// Package lograte keeps a log line that would repeat on every request
// (a credential source that is down, refused at 1,000 requests a second)
// to one line per key per interval, and counts the lines it held back so
// that the next line can say how many there were. The per-request record
// is the audit line; the log says that something is wrong and since when.
package lograte

import (
	"sync"
	"time"
)

// Limiter allows one line per key per interval. The zero value is not
// usable; use New. It is safe for concurrent use. Keys are few (a
// policy's credential names, reason codes, the kinds of a library's
// lines), so entries are never removed; past MaxKeys, new keys share one
// entry, so that keys a peer could vary cannot grow the table.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

// MaxKeys is the number of keys a Limiter tracks one by one; lines of
// any other key share one more entry.
const MaxKeys = 1024

// overflowKey is the entry the keys past MaxKeys share (not a string a
// caller's key can equal: keys are text).
const overflowKey = "\x00overflow"

type entry struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter allowing one line per key per every; now is the
// clock (nil: time.Now).
func New(every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, now: now, keys: map[string]*entry{}}
}

// Allow reports whether a line for key may be written now and, when it
// may, how many lines for key were held back since the last one written.
// The first line for a key is always allowed.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil && len(l.keys) >= MaxKeys {
		key = overflowKey
		e = l.keys[key]
	}
	if e == nil {
		l.keys[key] = &entry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// Len returns the number of keys the Limiter holds: at most MaxKeys+1
// (the keys past MaxKeys share one entry).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
