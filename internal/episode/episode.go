// Package episode tracks the failure episodes of an output (the audit
// file, its rotation, an OTLP receiver): a failure that repeats on every
// retry or line is logged once when the episode starts and once when it
// ends, counted every time, and its state is there for a health report.
// lograte bounds lines per interval; an output that stays down for hours
// needs one line, not one every interval, and a line when it is back.
package episode

import (
	"sync"
	"time"
)

// Tracker records one output's failures. The zero value is ready to
// use; it is safe for concurrent use.
type Tracker struct {
	mu       sync.Mutex
	failing  bool
	since    time.Time
	inEp     uint64 // failures in the current (or last) episode
	total    uint64
	lastErr  string
	episodes uint64
}

// Status is a Tracker's state.
type Status struct {
	// Failing is true from a failure until the next success.
	Failing bool
	// Since is when the current episode began (zero when not failing).
	Since time.Time
	// Failures counts every failure; EpisodeFailures those of the
	// current episode, or of the last one when not failing.
	Failures, EpisodeFailures uint64
	// Episodes counts the episodes begun.
	Episodes uint64
	// LastError is the text of the last failure (the caller's words: no
	// secret goes into it).
	LastError string
}

// Fail records a failure described by text at now and reports whether
// it began an episode (the caller logs then, and only then).
func (t *Tracker) Fail(now time.Time, text string) (began bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	t.lastErr = text
	if t.failing {
		t.inEp++
		return false
	}
	t.failing, t.since, t.inEp = true, now, 1
	t.episodes++
	return true
}

// OK records a success and, when it ended an episode, returns that
// episode's status (Failing still true, as it was) and true: the caller
// logs that the output recovered.
func (t *Tracker) OK() (ended Status, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.failing {
		return Status{}, false
	}
	ended = t.status()
	t.failing, t.since = false, time.Time{}
	return ended, true
}

// Status returns the state now.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status()
}

func (t *Tracker) status() Status {
	return Status{Failing: t.failing, Since: t.since, Failures: t.total, EpisodeFailures: t.inEp, Episodes: t.episodes, LastError: t.lastErr}
}
