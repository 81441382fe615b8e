package mitm

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestLeafCacheFairShare: one owner (a workload) opening tunnels to many
// names under a wildcard rule — 10× the cache's size — evicts the leaves
// of the others only while it holds fewer than they do, whatever it opens
// after; and the cache never holds more than its size. (The rule was
// "the largest owner if over a quarter, else the global LRU"; now always
// the largest owner, internal/fairlru: the bounds below are unchanged,
// and the rule keeps at least as many of the victims' leaves in each.)
// Before, the cache was one LRU: the hostile owner's names evicted every
// leaf of the others, each signed again at the victim's next handshake.
func TestLeafCacheFairShare(t *testing.T) {
	ca, err := LoadCA(WriteCAFor(t))
	if err != nil {
		t.Fatal(err)
	}
	const size = 16
	const share = size / 4
	tests := []struct {
		name string
		// victims are the other owners and how many hosts each uses,
		// cached before the hostile owner starts.
		victims map[string]int
		// hostiles open 10×size names each, in turn.
		hostiles []string
		// touch: the hostile owners first ask for every victim's hosts
		// (a hit does not take the leaf into their share).
		touch bool
		// maxLost bounds the victims' leaves evicted, all together.
		maxLost int
	}{
		{name: "victim at its share, cache not full", victims: map[string]int{"billing": share}, hostiles: []string{"crawler"}, maxLost: 0},
		{name: "anonymous victim", victims: map[string]int{"": share}, hostiles: []string{"crawler"}, maxLost: 0},
		{name: "anonymous hostile", victims: map[string]int{"billing": share}, hostiles: []string{""}, maxLost: 0},
		{name: "cache full of victims at their share", victims: map[string]int{"a": share, "b": share, "c": share, "d": share}, hostiles: []string{"crawler"}, maxLost: share},
		{name: "victim above its share keeps at least its share", victims: map[string]int{"billing": size - share}, hostiles: []string{"crawler"}, maxLost: size - 2*share},
		{name: "two hostile owners", victims: map[string]int{"billing": share}, hostiles: []string{"crawler", "scanner"}, maxLost: 0},
		// The old rule (global LRU while no owner held over a quarter)
		// lost share (4) leaves here; the largest-owner rule loses 1.
		{name: "cache full of owners of one leaf each", victims: singles(size), hostiles: []string{"crawler"}, maxLost: 1},
		{name: "hostile touches the victims' hosts first", victims: map[string]int{"a": share, "b": share}, hostiles: []string{"crawler"}, touch: true, maxLost: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			is := NewIssuer(ca, IssuerOptions{CacheSize: size, Now: func() time.Time { return now }})
			ctx := context.Background()
			get := func(owner, host string) {
				t.Helper()
				if _, err := is.Certificate(ctx, owner, host); err != nil {
					t.Fatal(err)
				}
			}
			var victimHosts [][2]string // owner, host
			for owner, n := range tc.victims {
				for i := range n {
					h := fmt.Sprintf("h%d.o%s.victim.test", i, owner)
					get(owner, h)
					victimHosts = append(victimHosts, [2]string{owner, h})
				}
			}
			for _, hostile := range tc.hostiles {
				if tc.touch {
					for _, v := range victimHosts {
						get(hostile, v[1])
					}
				}
				for i := range 10 * size {
					get(hostile, fmt.Sprintf("n%d.o%s.wild.test", i, hostile))
					if n := is.Len(); n > size {
						t.Fatalf("after %d names the cache holds %d leaves, bound %d", i+1, n, size)
					}
				}
			}
			lost := 0
			for _, v := range victimHosts {
				if _, ok := is.leaves.Peek(v[1]); !ok {
					lost++
				}
			}
			if lost > tc.maxLost {
				t.Errorf("the victims lost %d of their %d leaves to the hostile owners, bound %d", lost, len(victimHosts), tc.maxLost)
			}
			held := 0
			for owner := range tc.victims {
				held += is.Held(owner)
			}
			for _, owner := range tc.hostiles {
				held += is.Held(owner)
			}
			if held != is.Len() {
				t.Errorf("bookkeeping: owners hold %d, cache %d", held, is.Len())
			}
		})
	}
}

// singles is n owners of one host each.
func singles(n int) map[string]int {
	m := map[string]int{}
	for i := range n {
		m[fmt.Sprintf("w%d", i)] = 1
	}
	return m
}
