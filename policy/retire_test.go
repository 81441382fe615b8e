package policy

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/syncbuf"
)

// providerOf returns the test provider p built for credential c.
func providerOf(p *Policy) *testProvider {
	return p.Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.Provider.(*testProvider)
}

// TestStoreRetiresWhenReleased: a replaced policy's providers are closed
// when the last request holding it (Acquire) releases it — at once when
// none holds it, never while one does, however long after the reload —
// and at the latest MaxCloseDelay after the reload, with a warning. Before,
// they were closed a fixed minute after the reload whatever held them: a
// request still holding the old policy then (a slow fetch, a 401's
// reissue after a long upload) fetched from a closed provider.
func TestStoreRetiresWhenReleased(t *testing.T) {
	for _, c := range []struct {
		name  string
		holds int
		// capped: MaxCloseDelay is short and the holds are released only
		// after it passed.
		capped bool
	}{
		{name: "not held", holds: 0},
		{name: "held once", holds: 1},
		{name: "held three times", holds: 3},
		{name: "held past MaxCloseDelay", holds: 1, capped: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writeFile(t, path, storePolicy(1))
			var logs syncbuf.Buffer
			opts := StoreOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MaxCloseDelay: time.Hour}
			if c.capped {
				opts.MaxCloseDelay = 20 * time.Millisecond
			}
			s := newTestStore(t, path, opts)
			var held []*Policy
			for range c.holds {
				held = append(held, s.Acquire())
			}
			first := s.Current()
			old := providerOf(first)
			writeFile(t, path, storePolicy(2))
			if err := s.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			if p := s.Acquire(); p == first {
				t.Error("Acquire after the reload returned the replaced policy")
			} else {
				s.Release(p)
			}
			if c.capped {
				waitFor(t, "the stuck hold's policy to be closed at MaxCloseDelay", func() bool { return old.cleanups.Load() == 1 })
				if s.Retired() != 0 {
					t.Errorf("Retired() = %d after MaxCloseDelay, want 0", s.Retired())
				}
				if !strings.Contains(logs.String(), "still hold it") {
					t.Errorf("no warning about the requests still holding the policy; logs:\n%s", logs.String())
				}
			}
			for i, p := range held {
				if p != first {
					t.Fatalf("hold %d is of another policy", i)
				}
				if !c.capped {
					if n := old.cleanups.Load(); n != 0 {
						t.Fatalf("the replaced policy was closed with %d of %d holds still held", len(held)-i, len(held))
					}
					if s.Retired() != 1 {
						t.Fatalf("Retired() = %d while held, want 1", s.Retired())
					}
				}
				s.Release(p)
			}
			waitFor(t, "the replaced policy to be closed", func() bool { return old.cleanups.Load() >= 1 && s.Retired() == 0 })
			if n := old.cleanups.Load(); n != 1 {
				t.Errorf("the replaced policy's provider was cleaned up %d times, want 1", n)
			}
			if n := providerOf(s.Current()).cleanups.Load(); n != 0 {
				t.Errorf("the policy in force was cleaned up %d times", n)
			}
		})
	}
}

// TestStoreManyReloadsKeepOnlyHeld: 50 reloads in a row, with requests
// holding three of the replaced policies, leave exactly those three open
// (and the one in force); every other is closed without waiting, and the
// three close when released.
func TestStoreManyReloadsKeepOnlyHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: time.Hour})
	holdAt := map[int]bool{0: true, 10: true, 49: true}
	var all []*testProvider
	held := map[*testProvider]*Policy{}
	for i := range 50 {
		p := s.Acquire()
		prov := providerOf(p)
		all = append(all, prov)
		if holdAt[i] {
			held[prov] = p
		} else {
			s.Release(p)
		}
		writeFile(t, path, storePolicy(1+(i+1)%2))
		if err := s.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	closed := func(want func(*testProvider) int32) func() bool {
		return func() bool {
			for _, p := range all {
				if p.cleanups.Load() != want(p) {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "every replaced policy not held to be closed, and only those", closed(func(p *testProvider) int32 {
		if held[p] != nil {
			return 0
		}
		return 1
	}))
	if n := s.Retired(); n != len(holdAt) {
		t.Errorf("Retired() = %d, want %d (the held ones)", n, len(holdAt))
	}
	for _, p := range held {
		s.Release(p)
	}
	waitFor(t, "every replaced policy to be closed", closed(func(*testProvider) int32 { return 1 }))
	if n := s.Retired(); n != 0 {
		t.Errorf("Retired() = %d after every hold was released, want 0", n)
	}
	if n := providerOf(s.Current()).cleanups.Load(); n != 0 {
		t.Errorf("the policy in force was cleaned up %d times", n)
	}
}

// TestStoreAcquireRacesReload: a hold taken while reloads replace the
// policy is never of a closed policy, and every replaced policy is closed
// once all holds are released (run with -race).
func TestStoreAcquireRacesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: time.Hour})
	var mu sync.Mutex
	seen := map[*testProvider]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := s.Acquire()
				prov := providerOf(p)
				if n := prov.cleanups.Load(); n != 0 {
					t.Errorf("Acquire returned a policy already closed")
				}
				mu.Lock()
				seen[prov] = true
				mu.Unlock()
				s.Release(p)
			}
		})
	}
	for i := range 30 {
		writeFile(t, path, storePolicy(1+(i+1)%2))
		if err := s.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	cur := providerOf(s.Current())
	waitFor(t, "every replaced policy to be closed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range seen {
			if p != cur && p.cleanups.Load() != 1 {
				return false
			}
		}
		return s.Retired() == 0
	})
}
