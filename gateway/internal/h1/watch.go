package h1

import (
	"sync"
	"time"

	"github.com/credgate/credgate/internal/mono"
)

// watchList holds the server's connections whose handler runs, in the
// order their watch began, and one timer for all of them that starts the
// background read of each once it has been watched for
// backgroundReadDelay (conn.watch).
//
// One timer per server, not per connection, because of what setting a
// timer costs a process that sleeps between requests: a timer that
// becomes the earliest of its P makes the runtime wake an idle thread to
// watch it (wakeNetPoller: a futex wake, or a break of the poller's
// wait), and a per-request timer of 50 ms, set when the request is read
// and stopped microseconds later when its handler returns, is that
// earliest timer on nearly every request (docs/performance.md, "Critical
// path at a fixed rate"). Here the timer is not stopped when the
// connection it was set for leaves the list: it fires, starts what is
// due, and is set again for the oldest connection left, or not at all
// when none is. While requests keep coming it is set about once per
// backgroundReadDelay, whatever the rate; a connection's background read
// starts at the same moment as with a timer of its own (the timer never
// fires later than the due time of any connection in the list: later
// entries are due later).
type watchList struct {
	mu sync.Mutex
	// t is made on first use; armed says it is set (to fire at or
	// before the due time of head).
	t     *time.Timer
	armed bool
	// head and tail are the connections watched, oldest first
	// (conn.wprev, conn.wnext, conn.wsince: the time since base).
	head, tail *conn
	base       mono.Base
	// delay replaces backgroundReadDelay when positive (tests).
	delay time.Duration
	// sets counts the times the timer was set (tests).
	sets int
}

func (l *watchList) after() time.Duration {
	if l.delay > 0 {
		return l.delay
	}
	return backgroundReadDelay
}

// add appends c, watched from now on, and sets the timer when it is not
// set. The caller holds c.bgMu.
func (l *watchList) add(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t == nil {
		l.base = mono.Start()
	}
	c.wsince = l.base.Now()
	c.wprev, c.wnext = l.tail, nil
	if l.tail != nil {
		l.tail.wnext = c
	} else {
		l.head = c
	}
	l.tail = c
	if l.armed {
		return
	}
	l.armed = true
	l.sets++
	if l.t == nil {
		l.t = time.AfterFunc(l.after(), l.fire)
		return
	}
	l.t.Reset(l.after())
}

// remove takes c out of the list, if it is in it; the timer stays set.
// The caller holds c.bgMu.
func (l *watchList) remove(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.wprev != nil || l.head == c {
		l.unlink(c)
	}
}

func (l *watchList) unlink(c *conn) {
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		l.head = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	} else {
		l.tail = c.wprev
	}
	c.wprev, c.wnext = nil, nil
}

// fire starts the background read of every connection watched for the
// delay, each on a goroutine of its own (it blocks in a read), and sets
// the timer again for the oldest one left. A connection in the list is
// there for its current watch (stopWatching takes it out before the next
// watch adds it again), so the read is started for that one (bgGen).
func (l *watchList) fire() {
	d := l.after()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.base.Now()
	for c := l.head; c != nil && now-c.wsince >= d; c = l.head {
		l.unlink(c)
		go c.backgroundRead(c.bgGen.Load())
	}
	if l.head == nil {
		l.armed = false
		return
	}
	l.sets++
	l.t.Reset(l.head.wsince + d - now)
}

// watched returns how many connections are in the list, and how many
// times the timer was set (tests).
func (l *watchList) watched() (n, sets int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := l.head; c != nil; c = c.wnext {
		n++
	}
	return n, l.sets
}
