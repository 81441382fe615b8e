package providers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// storingShared is a SharedCache that keeps what fetch returned, as
// Redis would, and serves it until its Expiry; planted, when set, is
// served without calling fetch (an entry stored under a longer cap).
type storingShared struct {
	mu      sync.Mutex
	now     func() time.Time
	stored  *Credential
	planted *Credential
}

func (s *storingShared) Fetch(ctx context.Context, _ CacheKey, _ time.Duration, fetch func(context.Context) (*Credential, error)) (*Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.planted != nil {
		return s.planted, nil
	}
	if s.stored != nil && s.now().Before(s.stored.Expiry) {
		return s.stored, nil
	}
	c, err := fetch(ctx)
	if err == nil {
		s.stored = c
	}
	return c, err
}
func (s *storingShared) Forget(context.Context, CacheKey, *Credential)        {}
func (s *storingShared) InvalidateCredential(context.Context, string, string) {}
func (s *storingShared) Watch(func(Invalidation))                             {}

// TestCacheMaxTTL is the class of "a credential whose endpoint says it
// lives (nearly) for ever": whatever Expiry a provider returns — the 68
// years a capped expires_in gives, a thousand years, a day and an hour,
// just over and at the cap — or none with a default_ttl above the cap, the
// cache (and, through it, the shared tier) keeps it at most MaxTTL (the
// default and one configured), hands out an Expiry no later than that,
// and fetches anew once it has passed. Before MaxTTL existed a 68-year
// expires_in was cached for 68 years.
func TestCacheMaxTTL(t *testing.T) {
	type tc struct {
		name       string
		maxTTL     time.Duration // 0: the default
		defaultTTL time.Duration
		lifetime   time.Duration // 0: no Expiry
		farFuture  bool          // Expiry in the year 3026
		shared     bool
		planted    bool // the shared tier serves a long-lived entry
	}
	var cases []tc
	for _, max := range []time.Duration{0, 2 * time.Hour} {
		cap := max
		if cap == 0 {
			cap = DefaultCacheMaxTTL
		}
		for _, shared := range []bool{false, true} {
			for _, life := range []time.Duration{MaxSeconds * time.Second, 25 * time.Hour, cap + time.Second, cap, time.Hour} {
				cases = append(cases, tc{name: fmt.Sprintf("max=%v/shared=%v/life=%v", cap, shared, life), maxTTL: max, lifetime: life, shared: shared})
			}
			cases = append(cases,
				tc{name: fmt.Sprintf("max=%v/shared=%v/year-3026", cap, shared), maxTTL: max, farFuture: true, shared: shared},
				tc{name: fmt.Sprintf("max=%v/shared=%v/no-expiry-default-ttl-above-cap", cap, shared), maxTTL: max, defaultTTL: 48 * time.Hour, shared: shared},
			)
		}
		cases = append(cases, tc{name: fmt.Sprintf("max=%v/planted-in-shared", cap), maxTTL: max, planted: true, shared: true})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			cap := c.maxTTL
			if cap == 0 {
				cap = DefaultCacheMaxTTL
			}
			opts := CacheOptions{Now: clock.Now, MaxTTL: c.maxTTL, DefaultTTL: c.defaultTTL, RefreshAhead: -1, ErrorBackoff: -1}
			var sh *storingShared
			if c.shared {
				sh = &storingShared{now: clock.Now}
				if c.planted {
					sh.planted = tok("planted", clock.Now().Add(MaxSeconds*time.Second))
				}
				opts.Shared = sh
			}
			cache := newTestCache(t, opts)
			fetches := 0
			fetch := func(context.Context) (*Credential, error) {
				fetches++
				var exp time.Time
				switch {
				case c.farFuture:
					exp = time.Date(3026, 1, 1, 0, 0, 0, 0, time.UTC)
				case c.lifetime > 0:
					exp = clock.Now().Add(c.lifetime)
				}
				return tok(fmt.Sprintf("v%d", fetches), exp), nil
			}
			start := clock.Now()
			got, _, err := cache.Get(t.Context(), testKey, fetch)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !got.Expiry.IsZero() && got.Expiry.After(start.Add(cap)) {
				t.Errorf("the credential handed out expires %v after it was fetched, more than the cap %v", got.Expiry.Sub(start), cap)
			}
			if sh != nil && sh.stored != nil && sh.stored.Expiry.After(start.Add(cap)) {
				t.Errorf("the shared tier stored an Expiry %v after the fetch, more than the cap %v", sh.stored.Expiry.Sub(start), cap)
			}
			want := cap
			if c.lifetime > 0 && c.lifetime < cap {
				want = c.lifetime
			}
			clock.Advance(want - time.Second)
			if again, hit, err := cache.Get(t.Context(), testKey, fetch); err != nil || !hit || again != got {
				t.Errorf("a second before it expires, Get = hit %v, same %v, err %v; want the cached credential", hit, again == got, err)
			}
			clock.Advance(time.Second)
			before := fetches
			again, hit, err := cache.Get(t.Context(), testKey, fetch)
			if err != nil {
				t.Fatalf("Get at expiry: %v", err)
			}
			if hit || again == got {
				t.Errorf("at %v after the fetch (the cap or its own expiry), Get returned the cached credential", want)
			}
			if !c.planted && fetches != before+1 {
				t.Errorf("at %v after the fetch, Get made %d fetches, want 1", want, fetches-before)
			}
			if !again.Expiry.IsZero() && again.Expiry.After(clock.Now().Add(cap)) {
				t.Errorf("the refetched credential expires %v from now, more than the cap %v", again.Expiry.Sub(clock.Now()), cap)
			}
		})
	}
}
