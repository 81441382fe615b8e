package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, min uint64
		base      int
		want      int
	}{
		{3 * mib, 32 * mib, 100, 967},        // goal 3×10.67 ≥ 32
		{16 * mib, 32 * mib, 100, 100},       // the runtime's goal is the floor
		{20 * mib, 32 * mib, 100, 100},       // above the floor: the runtime's pacing
		{200 * mib, 32 * mib, 100, 100},      // never below base
		{10 * mib, 32 * mib, 300, 300},       // a base that already reaches it
		{10 * mib, 32 * mib, 50, 220},        // a base below 100 is raised to the floor
		{0, 32 * mib, 100, 3100},             // not measured yet: 1 MiB
		{1, 32 * mib, 100, 3100},             // below 1 MiB counts as 1 MiB
		{1 * mib, 1 << 40, 100, maxPercent},  // bounded
		{4 * mib, 4 * mib, 100, 100},         // at the floor
		{4*mib - 1, 8 * mib, 100, 101},       // just under: rounded up
		{5 * mib, 0, 100, 100},               // no floor
		{32 * mib, 32*mib + 1, 0, 1},         // GOGC=0-like base, rounded up
		{mib, 2 * mib, 100, 100},             // exactly the default goal
		{mib + 1, 2*mib + 3, 100, 101},       // 2×live one byte short: rounded up
		{3 * mib, 7 * mib, 100, 134},         // 7/3−1 = 1.333… → 134
		{7 * mib, 32 * mib, 100, 358},        // 32/7−1 = 3.571… → 358
		{24 * mib, 64 * mib, 100, 167},       // 64/24−1 = 1.666… → 167
		{math64(), math64(), 100, 100},       // no overflow at the top
		{1 << 62, 1 << 63, 100, 100},         // no overflow at the top
		{2 * mib, 1<<63 + 1<<62, 100, 10000}, // a huge floor: bounded
	} {
		got := Percent(tc.live, tc.min, tc.base)
		if got != tc.want {
			t.Errorf("Percent(live %d, min %d, base %d) = %d, want %d", tc.live, tc.min, tc.base, got, tc.want)
		}
		// Whatever it returns, the goal reaches the floor unless bounded,
		// and the percentage is never below base.
		if got < tc.base {
			t.Errorf("Percent(%d, %d, %d) = %d: below base", tc.live, tc.min, tc.base, got)
		}
		live := max(tc.live, mib)
		if got < maxPercent && float64(live)*(1+float64(got)/100) < float64(tc.min) {
			t.Errorf("Percent(%d, %d, %d) = %d: goal %.0f below the floor", tc.live, tc.min, tc.base, got, float64(live)*(1+float64(got)/100))
		}
	}
}

func math64() uint64 { return 1<<64 - 1 }

// heapGoal reads the runtime's heap goal for the current cycle.
func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestFloorFollowsEveryCycle starts a floor far above this test's live
// heap and checks that after collections the runtime's heap goal is at
// least the floor, that the floor re-tunes after each cycle (a live heap
// grown past the floor gets the base percentage back), and that Stop puts
// the old percentage back.
func TestFloorFollowsEveryCycle(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	const floor = 96 * mib
	f := Start(floor)
	defer f.Stop()
	if f.Percent() <= 100 {
		t.Fatalf("percent %d after Start: the floor is far above this test's heap", f.Percent())
	}
	waitFor(t, "a goal at the floor after a collection", func() bool {
		runtime.GC()
		return heapGoal() >= floor
	})

	// Grow the live heap past the floor: the next cycles give the base
	// percentage back.
	big := make([][]byte, 0, 128)
	for range 128 {
		big = append(big, make([]byte, mib))
	}
	waitFor(t, "the base percentage with a live heap above the floor", func() bool {
		runtime.GC()
		return f.Percent() == 100
	})
	runtime.KeepAlive(big)
	big = nil
	waitFor(t, "the floor again once the heap shrank", func() bool {
		runtime.GC()
		return f.Percent() > 100
	})

	f.Stop()
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("percent after Stop = %d, want the 100 it started from", now)
	}
	f.Stop() // twice is fine
	runtime.GC()
	runtime.GC()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("percent after Stop and two cycles = %d, want 100 (a stopped floor must not tune)", p)
	}
}

// TestGCOffLeftAlone: a GC turned off (GOGC=off) is not turned on.
func TestGCOffLeftAlone(t *testing.T) {
	prev := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	f := Start(64 * mib)
	defer f.Stop()
	runtime.GC()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("percent = %d, want -1 (off) left alone", p)
	}
}

// waitFor polls cond (each call runs a collection) until it holds, for at
// most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
