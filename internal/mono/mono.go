// Package mono keeps instants on the monotonic clock as durations since a
// base, a form that fits an atomic.Int64.
//
// It exists because an instant kept as Unix nanoseconds, the usual way
// to put one in an atomic, loses the monotonic reading time.Now carries:
// arithmetic on it then follows the wall clock, which NTP, an operator or
// a VM resumed from a snapshot can step by hours. Idle times, stall
// timers and lifetimes must not move with it; instants that others
// stated on the wall clock (a token's exp, a certificate's NotAfter)
// must, and stay time.Time.
package mono

import "time"

// Base is the zero of a monotonic timeline. The zero Base reads 0
// always.
type Base struct{ t time.Time }

// Start returns a Base at the current time.
func Start() Base { return Base{t: time.Now()} }

// From returns a Base at t, which must be a reading of time.Now (one
// that carries the monotonic clock).
func From(t time.Time) Base { return Base{t: t} }

// At returns the time from b to now, a reading of time.Now, on the
// monotonic clock: 0 for the zero Base, never negative.
func (b Base) At(now time.Time) time.Duration {
	if b.t.IsZero() {
		return 0
	}
	return max(now.Sub(b.t), 0)
}

// Now returns b.At(time.Now()).
func (b Base) Now() time.Duration { return b.At(time.Now()) }
