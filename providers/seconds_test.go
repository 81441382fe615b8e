package providers

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSeconds: every count of seconds an endpoint may answer gives a
// lifetime that is not negative, never shorter for a larger count (no
// wrap-around), and at most MaxSeconds.
func TestSeconds(t *testing.T) {
	prev := time.Duration(0)
	for _, n := range []int64{math.MinInt64, -1, 0, 1, 3599, 86400, math.MaxInt32, math.MaxInt32 + 1, 9_223_372_036, 10_000_000_000, 1 << 62, math.MaxInt64} {
		d := Seconds(n)
		switch {
		case n <= 0 && d != 0:
			t.Errorf("Seconds(%d) = %v, want 0", n, d)
		case d < prev:
			t.Errorf("Seconds(%d) = %v, shorter than for a smaller count (%v)", n, d, prev)
		case d > MaxSeconds*time.Second:
			t.Errorf("Seconds(%d) = %v, over MaxSeconds", n, d)
		}
		prev = d
	}
}

// TestNoUncheckedSeconds checks the class "no provider turns a count of
// seconds it was sent into a Duration unchecked": every
// time.Duration(x) * time.Second in the providers' code (an expires_in,
// a lease_duration, a ttl) overflows for a large x and wraps to a
// lifetime in the past or the far future; they go through Seconds.
func TestNoUncheckedSeconds(t *testing.T) {
	re := regexp.MustCompile(`time\.Duration\([^()]*\)\s*\*\s*time\.Second`)
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == "seconds.go" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if re.MatchString(line) {
				t.Errorf("%s:%d: %s: use providers.Seconds", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
