package rediscache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// TestNoExpiryLivesDefaultTTL is the class "a credential without its own
// expiry lives cache.default_ttl, in Redis and on every replica": for
// default_ttl shorter and longer than the Store's own default (5m), and
// a max_ttl below that default, the entry a Cache stores through a Store
// expires in Redis no later than default_ttl after the fetch, and a
// second replica that reads it keeps it until default_ttl after that
// fetch too, not for a default_ttl of its own counted from its read. Before, the Store
// kept every such entry for its own 5m whatever the gateway's
// default_ttl and max_ttl said (docs/config.md promised default_ttl), and
// each replica kept what it read for another default_ttl: 4 of the 5
// cases failed.
func TestNoExpiryLivesDefaultTTL(t *testing.T) {
	srv := redistest.Start(t)
	k := []Key{newKey(t, "k1")}
	cases := []struct{ defaultTTL, maxTTL time.Duration }{
		{30 * time.Second, 0},
		{90 * time.Second, 0},
		{10 * time.Minute, 0},
		{2 * time.Hour, 0},
		{4 * time.Minute, time.Minute}, // default_ttl capped by max_ttl
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("default=%v/max=%v", c.defaultTTL, c.maxTTL), func(t *testing.T) {
			key := providers.CacheKey{Credential: fmt.Sprintf("static-%d", i), Version: "v1", Provider: "static"}
			a, b := newStore(t, srv, k, nil), newStore(t, srv, k, nil)
			opts := providers.CacheOptions{DefaultTTL: c.defaultTTL, MaxTTL: c.maxTTL, RefreshAhead: -1}
			want := c.defaultTTL
			if c.maxTTL > 0 {
				want = min(want, c.maxTTL)
			}
			opts.Shared = a
			ca := providers.NewCache(opts)
			defer ca.Close()
			opts.Shared = b
			cb := providers.NewCache(opts)
			defer cb.Close()
			calls := 0
			fetch := func(context.Context) (*providers.Credential, error) {
				calls++
				return secretCred("no-expiry", time.Time{}), nil
			}
			start := time.Now()
			got, _, err := ca.Get(t.Context(), key, fetch)
			if err != nil {
				t.Fatal(err)
			}
			done := time.Now()
			// keptFor checks a replica's expiry: default_ttl after the
			// fetch, which ran between start and done.
			keptFor := func(who string, c *providers.Credential) {
				t.Helper()
				if c.Expiry.IsZero() || c.Expiry.Before(start.Add(want)) || c.Expiry.After(done.Add(want)) {
					t.Errorf("replica %s keeps it until %v after the fetch, want %v", who, c.Expiry.Sub(start), want)
				}
			}
			keptFor("A", got)
			pttl, err := a.rdb.PTTL(t.Context(), a.entryKey(keyHash(key))).Result()
			if err != nil {
				t.Fatal(err)
			}
			if pttl <= 0 || pttl > want {
				t.Errorf("the Redis entry expires in %v, want at most default_ttl %v (max_ttl %v)", pttl, want, c.maxTTL)
			}
			other, _, err := cb.Get(t.Context(), key, fetch)
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Errorf("%d provider calls, want 1 (replica B reads A's entry)", calls)
			}
			keptFor("B", other)
		})
	}
}
