package poll

import (
	"errors"
	"testing"
	"time"
)

// fakeT records a failure instead of stopping the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestUntil(t *testing.T) {
	n := 0
	True(t, time.Second, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		Until(ft, 20*time.Millisecond, "never", func() error { return errors.New("still no") })
	}()
	if ft.failed == "" {
		t.Fatal("Until did not fail after its timeout")
	}
}
