package providers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

// countingProvider issues "v1", "v2", ... each valid for a minute of
// clock, optionally with a Revoked context the test cancels.
type countingProvider struct {
	clock  *fakeClock
	calls  atomic.Int32
	mu     sync.Mutex
	revoke context.CancelFunc
}

func (p *countingProvider) Fetch(context.Context, Request) (*Credential, error) {
	n := p.calls.Add(1)
	c := tok(fmt.Sprintf("v%d", n), p.clock.Now().Add(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	c.Revoked = ctx
	p.mu.Lock()
	p.revoke = cancel
	p.mu.Unlock()
	return c, nil
}

// TestGetBoundSameAsGet is a differential test of GetBound's fast path
// (fresh: a valid credential not due for a refresh is handed out without
// building a fetch) against Get with the binding's fetch: through every
// state of an entry — missing, fresh, due for a refresh, expired,
// revoked, the cache closed — both answer the same credential, the same
// hit and make the same fetches.
func TestGetBoundSameAsGet(t *testing.T) {
	type step struct {
		Token   string
		Hit     bool
		Fetches int32
	}
	run := func(viaBound bool) []step {
		clock := newFakeClock()
		c := NewCache(CacheOptions{Now: clock.Now, RefreshAhead: 10 * time.Second, ErrorBackoff: -1})
		defer c.Close()
		p := &countingProvider{clock: clock}
		b := Bind(p, testKey, identity.Workload{Name: "w"})
		var out []step
		get := func() {
			var cred *Credential
			var hit bool
			var err error
			if viaBound {
				cred, hit, err = c.GetBound(context.Background(), b)
			} else {
				cred, hit, err = c.Get(context.Background(), b.Key, b.FetchFunc())
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, step{tokenOf(cred), hit, p.calls.Load()})
		}
		get() // missing: fetch v1
		get() // fresh: hit
		clock.Advance(55 * time.Second)
		get() // due for a refresh: hit v1, a refresh starts
		waitFor(t, "the refresh", func() bool { return p.calls.Load() == 2 && !c.inFlight(b.Key) })
		out[len(out)-1].Fetches = p.calls.Load() // the refresh runs in the background
		get() // fresh again: v2
		clock.Advance(2 * time.Minute)
		get() // expired: fetch v3
		p.mu.Lock()
		p.revoke()
		p.mu.Unlock()
		get() // revoked: fetch v4
		get() // fresh
		c.Close()
		get() // closed: every call fetches
		return out
	}
	want := []step{{"v1", false, 1}, {"v1", true, 1}, {"v1", true, 2}, {"v2", true, 2}, {"v3", false, 3}, {"v4", false, 4}, {"v4", true, 4}, {"v5", false, 5}}
	if diff := cmp.Diff(want, run(false)); diff != "" {
		t.Fatalf("Get (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, run(true)); diff != "" {
		t.Fatalf("GetBound (-want +got):\n%s", diff)
	}
}

// TestGetBoundFreshAllocs checks that a request whose credential is
// cached costs no allocation in Bind and GetBound: the fetch (a closure
// over the caller's request) is built on a miss or a refresh only.
func TestGetBoundFreshAllocs(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, CacheOptions{Now: clock.Now})
	p := &countingProvider{clock: clock}
	wl := identity.Workload{Name: "w"}
	if _, _, err := c.GetBound(context.Background(), Bind(p, testKey, wl)); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		if _, hit, err := c.GetBound(context.Background(), Bind(p, testKey, wl)); err != nil || !hit {
			t.Fatalf("hit %v, err %v", hit, err)
		}
	})
	if n != 0 {
		t.Fatalf("Bind and GetBound of a cached credential allocate %v times, want 0", n)
	}
}
