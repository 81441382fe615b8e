package gateway

import (
	"math/rand/v2"
	"testing"
)

// TestFlightSetAgainstMap checks the set's list against a map of the
// requests added and not removed, over random sequences of add and
// remove of a few requests: each added once or again (a second
// registration of the same reqState), removed once, again, or never
// added. After every step the scans see exactly the map's requests,
// each once, and still answers for a check taken from the current
// registration only.
func TestFlightSetAgainstMap(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var s flightSet
		fs := make([]inFlight, 5)
		want := map[*inFlight]bool{}
		checks := map[*inFlight]flightCheck{}
		for step := range 40 {
			f := &fs[rng.IntN(len(fs))]
			if rng.IntN(2) == 0 {
				s.add(f)
				want[f] = true
				checks[f] = flightCheck{f: f, seq: f.seq}
			} else {
				s.remove(f)
				delete(want, f)
			}
			seen := map[*inFlight]int{}
			for _, c := range s.pick(func(*inFlight) bool { return true }) {
				seen[c.f]++
			}
			if n := s.len(); n != len(want) || len(seen) != len(want) {
				t.Fatalf("seed %d step %d: the set holds %d (scan %d), want %d", seed, step, n, len(seen), len(want))
			}
			for f, n := range seen {
				if !want[f] || n != 1 {
					t.Fatalf("seed %d step %d: request %p seen %d times, in the set: %v", seed, step, f, n, want[f])
				}
			}
			for i := range fs {
				f := &fs[i]
				c, ok := checks[f]
				if !ok {
					continue
				}
				if got := s.still(c, func(*inFlight) {}); got != want[f] {
					t.Fatalf("seed %d step %d: still(current registration of %d) = %v, want %v", seed, step, i, got, want[f])
				}
				if c.seq > 1 && s.still(flightCheck{f: f, seq: c.seq - 1}, func(*inFlight) {}) && c.seq-1 != f.seq {
					t.Fatalf("seed %d step %d: still answered for an earlier registration of %d", seed, step, i)
				}
			}
		}
	}
}

// TestFlightSetAllocs: a request joins and leaves the set without an
// allocation.
func TestFlightSetAllocs(t *testing.T) {
	var s flightSet
	var other inFlight
	s.add(&other)
	f := new(inFlight)
	if n := testing.AllocsPerRun(100, func() {
		s.add(f)
		s.remove(f)
	}); n != 0 {
		t.Errorf("add and remove: %v allocations, want 0", n)
	}
}

// BenchmarkFlightSet is one request's registration and removal with 32
// others in flight (the bench's keep-alive connections), under the
// set's lock as the request path takes it.
func BenchmarkFlightSet(b *testing.B) {
	var s flightSet
	others := make([]inFlight, 32)
	for i := range others {
		s.add(&others[i])
	}
	f := new(inFlight)
	b.ReportAllocs()
	for b.Loop() {
		s.add(f)
		s.remove(f)
	}
}
