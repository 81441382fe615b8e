package rediscache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// TestDroppedCredentialLeavesRedis: a credential the cache drops — an
// upstream's 401 (Cache.Forget), an injector's refusal (Cache.Reject),
// the provider's revocation (Credential.Revoked) — leaves the Redis tier
// too, so that the next Get, on this replica or another, fetches anew,
// whether or not the cache moved its expiry: a credential living longer
// than cache.max_ttl (an hour-long token under max_ttl 30m, a
// credential without expiry under default_ttl = max_ttl), one a replica
// with a longer max_ttl stored, and one within the cap. The cache hands
// out a copy of a credential whose expiry it moves (capExpiry), and the
// Redis tier drops only the credential it holds: before, the cache told
// it to drop the copy, the entry stayed, and every replica was served
// the rejected or revoked credential from Redis until it expired.
func TestDroppedCredentialLeavesRedis(t *testing.T) {
	srv := redistest.Start(t)
	keys := []Key{newKey(t, "k")}
	type shape struct {
		name       string
		maxTTL     time.Duration
		defaultTTL time.Duration
		life       time.Duration // 0: no expiry
		storedBy   time.Duration // the max_ttl of the replica that stores (0: the same cache)
	}
	shapes := []shape{
		{name: "within-the-cap", maxTTL: 2 * time.Hour, life: time.Hour},
		{name: "longer-than-max-ttl", maxTTL: 30 * time.Minute, life: time.Hour},
		{name: "no-expiry-default-ttl-at-cap", maxTTL: 30 * time.Minute, defaultTTL: 30 * time.Minute},
		{name: "stored-under-a-longer-cap", maxTTL: 30 * time.Minute, life: time.Hour, storedBy: 2 * time.Hour},
	}
	drops := []string{"forget", "reject", "revoked"}
	failed, total := 0, 0
	for _, sh := range shapes {
		for _, drop := range drops {
			t.Run(sh.name+"/"+drop, func(t *testing.T) {
				total++
				key := testKey
				key.Scope = sh.name + "/" + drop
				var calls atomic.Int64
				revoke := map[int64]context.CancelFunc{}
				fetch := func(context.Context) (*providers.Credential, error) {
					n := calls.Add(1)
					c := secretCred(fmt.Sprintf("tok-%s-%d", key.Scope, n), time.Time{})
					if sh.life > 0 {
						c.Expiry = time.Now().Add(sh.life)
					}
					if drop == "revoked" {
						ctx, cancel := context.WithCancel(context.Background())
						c.Revoked = ctx
						revoke[n] = cancel
					}
					return c, nil
				}
				newCache := func(maxTTL time.Duration) *providers.Cache {
					c := providers.NewCache(providers.CacheOptions{Shared: newStore(t, srv, keys, nil), MaxTTL: maxTTL, DefaultTTL: sh.defaultTTL, RefreshAhead: -1})
					t.Cleanup(c.Close)
					return c
				}
				ctx := context.Background()
				if sh.storedBy > 0 {
					if _, _, err := newCache(sh.storedBy).Get(ctx, key, fetch); err != nil {
						t.Fatal(err)
					}
				}
				a, b := newCache(sh.maxTTL), newCache(sh.maxTTL)
				got, _, err := a.Get(ctx, key, fetch)
				if err != nil {
					t.Fatal(err)
				}
				first := got.Fields[providers.FieldToken].Reveal()
				switch drop {
				case "forget":
					if !a.Forget(key, got) {
						t.Fatal("Forget dropped nothing")
					}
				case "reject":
					if !a.Reject(key, got, errors.New("the injector refused it")) {
						t.Fatal("Reject dropped nothing")
					}
				case "revoked":
					revoke[1]()
					// The cache drops it when told (an AfterFunc), or
					// at the next Get: poll, bounded.
					deadline := time.Now().Add(2 * time.Second)
					for {
						c, _, err := a.Get(ctx, key, fetch)
						if err == nil && c.Fields[providers.FieldToken].Reveal() != first {
							break
						}
						if time.Now().After(deadline) {
							failed++
							t.Errorf("this replica was still served the revoked credential after 2s (provider called %d times)", calls.Load())
							return
						}
						<-time.After(10 * time.Millisecond) // poll the revocation's effect
					}
				}
				// Another replica, and this one after the error backoff,
				// must not get the dropped credential from Redis.
				for name, c := range map[string]*providers.Cache{"another replica": b, "this replica": a} {
					if drop == "reject" && c == a {
						continue // within the backoff this replica answers the refusal
					}
					got, _, err := c.Get(ctx, key, fetch)
					if err != nil {
						t.Fatalf("%s: Get: %v", name, err)
					}
					if got.Fields[providers.FieldToken].Reveal() == first {
						failed++
						t.Errorf("%s was served the dropped credential from Redis (provider called %d times)", name, calls.Load())
						break
					}
				}
			})
		}
	}
	t.Logf("%d of %d cases failed", failed, total)
}
