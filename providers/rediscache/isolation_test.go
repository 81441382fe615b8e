package rediscache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// TestReplicasReadOnlyTheirKey is the Redis tier's part of the class "a
// caller never gets a credential cached for another": one replica seals a
// credential for a cache key; another replica on the same Redis, with the
// same encryption keys, asking for a key that differs in one part only —
// the credential's name, its version (another definition, on a replica
// with another config), the caller's scope, the provider — or asking
// with another namespace or other encryption keys, fetches its own and
// never gets the first replica's. An entry copied by a Redis writer to
// each of those keys does not open there either.
func TestReplicasReadOnlyTheirKey(t *testing.T) {
	srv := redistest.Start(t)
	keys := []Key{newKey(t, "k1")}
	base := providers.CacheKey{Credential: "stripe", Version: "0123456789abcdef", Scope: "vault:" + fmt.Sprintf("%064x", 1), Provider: "vault"}
	other := func(f func(*providers.CacheKey)) providers.CacheKey {
		k := base
		f(&k)
		return k
	}
	type replica struct {
		namespace string
		keys      []Key
	}
	cases := []struct {
		name string
		key  providers.CacheKey
		r    replica
	}{
		{"another credential", other(func(k *providers.CacheKey) { k.Credential = "stripe-test" }), replica{"iso", keys}},
		{"a credential named as a prefix", other(func(k *providers.CacheKey) { k.Credential = "strip" }), replica{"iso", keys}},
		{"another version", other(func(k *providers.CacheKey) { k.Version = "0123456789abcdee" }), replica{"iso", keys}},
		{"another scope", other(func(k *providers.CacheKey) { k.Scope = "vault:" + fmt.Sprintf("%064x", 2) }), replica{"iso", keys}},
		{"no scope", other(func(k *providers.CacheKey) { k.Scope = "" }), replica{"iso", keys}},
		{"another provider", other(func(k *providers.CacheKey) { k.Provider = "static" }), replica{"iso", keys}},
		{"name and version shifted", other(func(k *providers.CacheKey) { k.Credential, k.Version = "stripe0", "123456789abcdef" }), replica{"iso", keys}},
		{"scope and provider shifted", other(func(k *providers.CacheKey) { k.Scope, k.Provider = base.Scope+"v", "ault" }), replica{"iso", keys}},
		{"another namespace", base, replica{"iso2", keys}},
		{"other encryption keys", base, replica{"iso", []Key{newKey(t, "k2")}}},
		{"the same key id, another secret", base, replica{"iso", []Key{newKey(t, "k1")}}},
	}
	store := func(r replica) *Store {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 0})
		t.Cleanup(func() { _ = c.Close() })
		s, err := New(context.Background(), Options{Client: c, Namespace: r.namespace, Keys: r.keys,
			HealthInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, LockTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	ctx := context.Background()
	a := store(replica{"iso", keys})
	exp := time.Now().Add(time.Hour)
	if c, err := a.Fetch(ctx, base, 0, func(context.Context) (*providers.Credential, error) { return secretCred("tok-first", exp), nil }); err != nil || c.Fields[providers.FieldToken].Reveal() != "tok-first" {
		t.Fatalf("first replica: %v", err)
	}
	sealed := srv.Client().Get(ctx, a.entryKey(keyHash(base))).Val()
	if sealed == "" {
		t.Fatal("the first replica stored nothing")
	}
	failed := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := store(c.r)
			fetched := 0
			fetch := func(context.Context) (*providers.Credential, error) {
				fetched++
				return secretCred("tok-own", exp), nil
			}
			check := func(what string) {
				t.Helper()
				got, err := b.Fetch(ctx, c.key, 0, fetch)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if v := got.Fields[providers.FieldToken].Reveal(); v != "tok-own" || fetched != 1 {
					failed++
					t.Errorf("%s: got the first replica's credential (%d fetches of its own)", what, fetched)
				}
			}
			check("asked")
			if c.key == base {
				return // the same Redis key: the splice is the case above
			}
			// A Redis writer copies the first replica's entry over this
			// key's: it does not open here.
			ek := b.entryKey(keyHash(c.key))
			if err := srv.Client().Set(ctx, ek, sealed, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			fetched = 0
			b2 := store(c.r) // a replica that has not seen this key
			got, err := b2.Fetch(ctx, c.key, 0, fetch)
			if err != nil {
				t.Fatalf("after the copy: %v", err)
			}
			if v := got.Fields[providers.FieldToken].Reveal(); v != "tok-own" {
				failed++
				t.Errorf("an entry copied from the first replica's key opened under this one")
			}
		})
	}
	t.Logf("%d of %d checks got another key's credential", failed, 2*len(cases)-3)
}
