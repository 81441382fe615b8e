// Package poll is how credgate's tests wait for a condition: they check
// it until it holds or a deadline passes, never sleeping a guessed time as
// synchronisation (Tailscale's tstest.WaitFor). It exists so that each
// package's tests do not carry their own copy of the loop.
package poll

import (
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 5 * time.Millisecond

// Until checks cond every Interval until it returns nil, and fails t
// (naming what, the timeout and cond's last error) when timeout passes
// first.
func Until(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// Within checks cond every Interval until it holds or timeout passes,
// and reports whether it held: for a test that counts its failures
// instead of stopping at the first.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// True is Until for a condition that says only whether it holds.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Until(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}
