package vault

import "time"

// clock is the time source for expiry and renewal schedules, so tests can
// drive token and lease lifetimes with a fake clock. Retry backoff between
// attempts of one request uses real time (it is milliseconds long and
// bounded by the request's context).
type clock interface {
	// Now returns the current time.
	Now() time.Time
	// TimerAt returns a channel that receives once the clock reaches at,
	// and a function that stops the timer.
	TimerAt(at time.Time) (<-chan time.Time, func())
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) TimerAt(at time.Time) (<-chan time.Time, func()) {
	t := time.NewTimer(time.Until(at))
	return t.C, func() { t.Stop() }
}
