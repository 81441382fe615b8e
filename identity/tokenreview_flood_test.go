package identity

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestTokenReviewFlood is the class "a client floods the gateway with
// tokens it has not seen": the API server gets a bounded number of
// reviews, a rejected token is answered from memory, a good token cached
// before the flood still resolves without a review, and another source's
// new token is still reviewed.
func TestTokenReviewFlood(t *testing.T) {
	const n = 500
	v4 := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000)
	}
	v6 := func(i int) netip.AddrPort {
		a := netip.MustParseAddr("2001:db8:1:2::").As16()
		a[14], a[15] = byte(i>>8), byte(i)
		return netip.AddrPortFrom(netip.AddrFrom16(a), 40000)
	}
	attacker := netip.MustParseAddrPort("10.9.9.9:5555")
	tests := []struct {
		name string
		// source and token of the i-th request of the flood.
		source func(i int) netip.AddrPort
		token  func(i int) string
		// maxReviews bounds the API calls the flood may cause.
		maxReviews int32
		// wantThrottled: some requests were refused unreviewed.
		wantThrottled bool
	}{
		{"one source, new garbage tokens", func(int) netip.AddrPort { return attacker }, func(i int) string { return fmt.Sprint("garbage-", i) },
			DefaultTokenReviewBurst, true},
		{"one source, one garbage token repeated", func(int) netip.AddrPort { return attacker }, func(int) string { return "garbage" },
			1, false},
		{"one IPv6 /64, new address and token each time", v6, func(i int) string { return fmt.Sprint("garbage-", i) },
			DefaultTokenReviewBurst, true},
		{"many sources, one garbage token each", v4, func(i int) string { return fmt.Sprint("garbage-", i) },
			n, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			api := newAPIServer(t)
			goodToken, lateToken := projectedToken("good"), projectedToken("late")
			api.authenticate(goodToken, "system:serviceaccount:billing:api", nil, "")
			api.authenticate(lateToken, "system:serviceaccount:billing:worker", nil, "")
			cfg := api.config(t)
			cfg.NegativeCacheSize = 100 // smaller than the flood: bounded
			v := newTestTokenReview(t, clock, cfg, nil)
			ctx := context.Background()
			good := netip.MustParseAddrPort("10.2.0.1:4000")
			if _, err := v.Verify(ctx, Evidence{Source: good, ProxyAuthorization: "Bearer " + goodToken}); err != nil {
				t.Fatal(err)
			}
			before := api.hits.Load()
			throttled := 0
			for i := range n {
				_, err := v.Verify(ctx, Evidence{Source: tt.source(i), ProxyAuthorization: "Bearer " + tt.token(i)})
				switch {
				case errors.Is(err, ErrInvalid):
				case errors.Is(err, ErrUnavailable):
					throttled++
				default:
					t.Fatalf("garbage token %d: %v, want refused", i, err)
				}
			}
			if got := api.hits.Load() - before; got > tt.maxReviews {
				t.Errorf("the flood caused %d reviews, want at most %d", got, tt.maxReviews)
			}
			if (throttled > 0) != tt.wantThrottled {
				t.Errorf("%d of %d refused unreviewed, want some: %v", throttled, n, tt.wantThrottled)
			}
			if st := v.stats(); st.Throttled != uint64(throttled) || st.NegativeCached > 100 || st.Cached != 1 {
				t.Errorf("stats %+v after %d throttled", st, throttled)
			}

			// The good token, cached before, needs no review.
			before = api.hits.Load()
			if f, err := v.Verify(ctx, Evidence{Source: good, ProxyAuthorization: "Bearer " + goodToken}); err != nil || f == nil {
				t.Fatalf("good token after the flood: %v", err)
			}
			if api.hits.Load() != before {
				t.Error("the good token cached before the flood was reviewed again")
			}
			// Another source's new token is reviewed and accepted.
			if _, err := v.Verify(ctx, Evidence{Source: netip.MustParseAddrPort("10.3.0.1:4000"), ProxyAuthorization: "Bearer " + lateToken}); err != nil {
				t.Fatalf("new good token from another source during the flood: %v", err)
			}
			// The flooding source's budget refills at review_rate.
			if tt.wantThrottled {
				clock.Advance(time.Second)
				_, err := v.Verify(ctx, Evidence{Source: tt.source(0), ProxyAuthorization: "Bearer refilled"})
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("a second later: %v, want a review (ErrInvalid)", err)
				}
			}
		})
	}
}

// TestTTLCacheBounded: the bounded TTL map drops its least recently used entry when
// full, expires entries, and an update keeps a key once.
func TestTTLCacheBounded(t *testing.T) {
	c := newTTLCache[int, string](3)
	now := t0
	for i := range 5 {
		c.put(i, fmt.Sprint(i), now.Add(time.Minute), now)
	}
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(i, now); ok != want {
			t.Errorf("get(%d) = %v, want %v", i, ok, want)
		}
	}
	c.put(2, "two", now.Add(time.Second), now) // update: still one entry
	if v, _ := c.get(2, now); v != "two" || c.len() != 3 {
		t.Errorf("after update: %q, len %d", v, c.len())
	}
	if _, ok := c.get(2, now.Add(time.Second)); ok {
		t.Error("an expired entry was returned")
	}
}

// TestTTLCacheVictimSurvivesFlood: a caller that puts 10× the cache's
// size of keys (tokens of an issuer that mints on request, verified or
// reviewed one by one) never grows the cache past its bound, and evicts
// another caller's entry only when that one went unused for the cache's
// size of them: a victim that uses its token at least that often is
// never verified (or reviewed, against its source's budget) again.
// Before, the entry inserted first went whatever its use: every victim's
// token was evicted by the flood.
func TestTTLCacheVictimSurvivesFlood(t *testing.T) {
	const size = 16
	for _, every := range []int{1, size / 2, size - 1} {
		t.Run(fmt.Sprintf("victim every %d", every), func(t *testing.T) {
			c := newTTLCache[string, string](size)
			now := t0
			c.put("victim", "billing", now.Add(time.Hour), now)
			misses := 0
			for i := range 10 * size {
				c.put(fmt.Sprintf("hostile-%d", i), "crawler", now.Add(time.Hour), now)
				if c.len() > size {
					t.Fatalf("after %d keys the cache holds %d, bound %d", i+1, c.len(), size)
				}
				if (i+1)%every == 0 {
					if _, ok := c.get("victim", now); !ok {
						misses++
						c.put("victim", "billing", now.Add(time.Hour), now)
					}
				}
			}
			if misses != 0 {
				t.Errorf("the victim's entry was evicted %d times", misses)
			}
		})
	}
}

// TestTokenReviewLimitsConfig: the limits default, and bad values name
// their key.
func TestTokenReviewLimitsConfig(t *testing.T) {
	base := KubernetesConfig{Audiences: []string{"credgate"}}
	full := Config{Kubernetes: &base}.WithDefaults()
	k := full.Kubernetes
	if k.CacheSize != DefaultTokenCacheSize || k.NegativeCacheTTL != DefaultTokenReviewNegativeTTL || k.NegativeCacheSize != DefaultTokenReviewNegativeSize ||
		k.ReviewRate != DefaultTokenReviewRate || k.ReviewBurst != DefaultTokenReviewBurst || k.ReviewSources != DefaultTokenReviewSources {
		t.Errorf("defaults: %+v", *k)
	}
	for _, tt := range []struct {
		set  func(*KubernetesConfig)
		want string
	}{
		{func(k *KubernetesConfig) { k.ReviewRate = -1 }, "kubernetes.review_rate"},
		{func(k *KubernetesConfig) { k.ReviewRate = 1e6 }, "kubernetes.review_rate"},
		{func(k *KubernetesConfig) { k.ReviewBurst = -1 }, "kubernetes.review_burst"},
		{func(k *KubernetesConfig) { k.NegativeCacheSize = -1 }, "kubernetes.negative_cache_size"},
		{func(k *KubernetesConfig) { k.CacheSize = -1 }, "kubernetes.cache_size"},
		{func(k *KubernetesConfig) { k.ReviewSources = -1 }, "kubernetes.review_sources"},
		{func(k *KubernetesConfig) { k.NegativeCacheTTL = -time.Second }, "kubernetes.negative_cache_ttl"},
	} {
		c := base
		tt.set(&c)
		err := Config{Kubernetes: &c}.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.want, err)
		}
	}
}
