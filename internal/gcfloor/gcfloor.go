// Package gcfloor keeps the Go garbage collector from collecting a small
// heap over and over: it raises the GC percentage (GOGC) after each cycle
// so that the next cycle's heap goal is at least a floor.
//
// A gateway under load allocates a few kilobytes per request on a live
// heap of a few megabytes. With GOGC=100 the runtime then collects every
// time the heap doubles, many times a second, and each cycle costs CPU
// (marking, write barriers, assists) that does not depend on how little
// there is to mark. Keeping the goal at a floor of a few tens of
// megabytes makes those cycles rarer at the price of that much memory.
// A heap larger than the floor is left to the runtime's own pacing: the
// percentage then goes back to what it was (100, or the value the floor
// started with), so the floor never makes a large heap grow further.
// The soft memory limit (GOMEMLIMIT) still applies on top: near it the
// runtime collects whatever the percentage says.
package gcfloor

import (
	"math/bits"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// liveMetric is the heap the last GC cycle found live (the runtime's own
// base for the next goal).
const liveMetric = "/gc/heap/live:bytes"

// maxPercent bounds the percentage the floor sets, for a live heap so
// small the floor would otherwise ask for a huge ratio.
const maxPercent = 10000

// Floor keeps the GC's heap goal at or above Min bytes until Stop.
type Floor struct {
	min  uint64
	base int // the percentage before the floor, used above the floor

	mu      sync.Mutex
	stopped bool
	percent int // last set
	sample  []metrics.Sample
}

// Start sets the GC percentage for a heap goal of at least min bytes and
// keeps it so after every GC cycle, until Stop. It changes process-wide
// runtime state (debug.SetGCPercent): run at most one Floor in a
// process, and not at all when GOGC is set in the environment (the
// caller's choice wins). A GC percentage below 0 (GC off) is left alone.
func Start(min uint64) *Floor {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	f := &Floor{min: min, base: base, percent: base, sample: []metrics.Sample{{Name: liveMetric}}}
	if base < 0 || min == 0 {
		f.stopped = true
		return f
	}
	f.tune()
	f.arm()
	return f
}

// Percent returns the GC percentage the floor set last.
func (f *Floor) Percent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.percent
}

// Stop ends the floor and puts back the percentage it started from.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	debug.SetGCPercent(f.base)
	f.percent = f.base
}

// sentinel is garbage from birth: its cleanup runs after the GC cycle
// that frees it, which re-tunes the floor and arms a new one. It is
// large enough and holds a pointer, so it is not batched with other tiny
// objects (which could keep it alive past its cycle).
type sentinel struct {
	_ *byte
	_ [24]byte
}

// arm allocates a sentinel whose cleanup runs cycle after the next GC.
func (f *Floor) arm() {
	s := new(sentinel)
	runtime.AddCleanup(s, (*Floor).cycle, f)
}

// cycle runs on the runtime's cleanup goroutine after a GC cycle.
func (f *Floor) cycle() {
	if f.tune() {
		f.arm()
	}
}

// tune sets the percentage for the live heap the last cycle found and
// reports whether the floor is still on.
func (f *Floor) tune() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	var live uint64
	if f.sample[0].Value.Kind() == metrics.KindUint64 {
		live = f.sample[0].Value.Uint64()
	}
	if p := Percent(live, f.min, f.base); p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	return true
}

// Percent returns the GC percentage that makes the heap goal of a live
// heap of live bytes at least floor, and never below base: base when
// live×(1+base/100) already reaches floor, else the least percentage that
// does, at most maxPercent. A live heap not yet measured (0) counts as
// 1 MiB.
func Percent(live, floor uint64, base int) int {
	if live < 1<<20 {
		live = 1 << 20
	}
	if floor <= live {
		return base
	}
	// The least p with live×(1+p/100) ≥ floor is ⌈(floor−live)×100 / live⌉,
	// computed exactly: q whole lives and a remainder r < live.
	q, r := (floor-live)/live, (floor-live)%live
	if q >= maxPercent/100 {
		return max(base, maxPercent)
	}
	hi, lo := bits.Mul64(r, 100)
	frac, rem := bits.Div64(hi, lo, live) // hi < live, as r < live
	p := int(q)*100 + int(frac)
	if rem != 0 {
		p++
	}
	return min(max(base, p), max(base, maxPercent))
}
