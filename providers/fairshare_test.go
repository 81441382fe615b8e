package providers

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
)

// perCaller is a provider with a credential per caller: its scope is the
// workload and the caller's address (as a token exchange is per token).
type perCaller struct {
	mu    sync.Mutex
	calls map[string]int // fetches per workload
}

func (p *perCaller) Fetch(_ context.Context, req Request) (*Credential, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[req.Workload.Name]++
	return tok("for-"+req.Workload.Name, time.Time{}), nil
}

func (p *perCaller) CacheScope(req Request) string {
	return NewScope("per-caller").Add("workload", req.Workload.Name).Add("source", req.Workload.Source.String()).String()
}

func (p *perCaller) fetches(wl string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[wl]
}

// evictions records the cache's eviction events by cause.
type evictions struct {
	recorder
	mu     sync.Mutex
	causes map[string]int
}

func (e *evictions) ProviderEvent(_, event, result string) {
	if event != "evict" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.causes[result]++
}

// TestCacheFloodKeepsOtherWorkloads: a workload with a credential per
// caller that floods the cache with distinct scopes evicts its own
// entries, not those of other workloads nor the credentials shared by
// all (a denial of service across workloads before: the flood pushed
// every other entry out, and each was fetched again). Evictions are
// counted by cause.
func TestCacheFloodKeepsOtherWorkloads(t *testing.T) {
	const max = 16
	cases := []struct {
		name      string
		victims   map[string]int // workload: scopes it keeps cached
		shared    bool           // an unscoped credential used by all
		flooders  []string
		floodSize int
		every     int // the others use theirs every so many flood steps (0: not during the flood)
	}{
		{"one entry of another workload", map[string]int{"billing": 1}, false, []string{"agent"}, 200, 0},
		{"several entries of another workload", map[string]int{"billing": 4}, false, []string{"agent"}, 200, 0},
		{"entries of several workloads", map[string]int{"billing": 3, "ci": 2, "web": 1}, false, []string{"agent"}, 200, 0},
		{"a credential shared by all", nil, true, []string{"agent"}, 200, 0},
		{"entries in use during the flood", map[string]int{"billing": 2, "ci": 1}, true, []string{"agent"}, 200, 10},
		{"two workloads flood", map[string]int{"billing": 2}, true, []string{"agent", "scraper"}, 200, 0},
		{"a flood as large as the cache", map[string]int{"billing": 2}, false, []string{"agent"}, max, 0},
	}
	failed := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := &evictions{causes: map[string]int{}}
			c := newTestCache(t, CacheOptions{Now: newFakeClock().Now, MaxEntries: max, Observer: ev})
			p := &perCaller{calls: map[string]int{}}
			key := CacheKey{Credential: "exchanged", Version: "v", Provider: "per-caller"}
			get := func(wl string, n int) {
				t.Helper()
				w := identity.Workload{Name: wl, Source: netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)})}
				if _, _, err := c.GetBound(context.Background(), Bind(p, key, w)); err != nil {
					t.Fatal(err)
				}
			}
			var sharedCalls int
			getShared := func() {
				t.Helper()
				_, _, err := c.Get(context.Background(), CacheKey{Credential: "shared", Version: "v", Provider: "static"}, func(context.Context) (*Credential, error) {
					sharedCalls++
					return tok("shared", time.Time{}), nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			use := func() {
				for wl, n := range tc.victims {
					for i := range n {
						get(wl, i)
					}
				}
				if tc.shared {
					getShared()
				}
			}
			use()
			for i := range tc.floodSize {
				for _, f := range tc.flooders {
					get(f, i)
				}
				if tc.every > 0 && i%tc.every == 0 {
					use() // the other workloads keep using theirs
				}
			}
			use()
			bad := false
			for wl, n := range tc.victims {
				if got := p.fetches(wl); got != n {
					bad = true
					t.Errorf("workload %s: %d fetches for its %d credentials, want %d (evicted by the flood)", wl, got, n, n)
				}
			}
			if tc.shared && sharedCalls != 1 {
				bad = true
				t.Errorf("the shared credential was fetched %d times, want once", sharedCalls)
			}
			if l := c.Len(); l > max {
				t.Errorf("Len = %d, want ≤ %d", l, max)
			}
			if bad {
				failed++
			}
			ev.mu.Lock()
			defer ev.mu.Unlock()
			if total := ev.causes[EvictOwnEntries] + ev.causes[EvictLargestHolder]; tc.floodSize*len(tc.flooders) > max && total == 0 {
				t.Errorf("no eviction counted: %v", ev.causes)
			}
		})
	}
	t.Logf("%d of %d floods evicted other workloads' entries", failed, len(cases))
}
