package mono

import (
	"testing"
	"time"
)

// TestBase: durations on a Base grow with the monotonic clock, are never
// negative, and a zero Base reads 0.
func TestBase(t *testing.T) {
	b := Start()
	d1 := b.Now()
	d2 := b.Now()
	if d1 < 0 || d2 < d1 {
		t.Errorf("readings %v then %v: want non-negative and not decreasing", d1, d2)
	}
	if got := b.At(time.Now().Add(-time.Hour)); got != 0 {
		t.Errorf("an instant before the base reads %v, want 0", got)
	}
	if got := b.At(time.Now().Add(time.Hour)); got < time.Hour {
		t.Errorf("an hour later reads %v", got)
	}
	if got := (Base{}).Now(); got != 0 {
		t.Errorf("zero Base reads %v, want 0", got)
	}
	// From a reading of time.Now, the same timeline.
	now := time.Now()
	if got := From(now).At(now.Add(time.Minute)); got != time.Minute {
		t.Errorf("From: %v, want 1m", got)
	}
}
