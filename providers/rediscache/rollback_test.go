package rediscache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestRollbackAndSplice is the class "a Redis writer moves or replays a
// sealed entry": each splice, done with a Redis client on a real Redis, is
// refused, counted, treated as a miss (the provider is called), and the
// credential returned is never the spliced one.
func TestRollbackAndSplice(t *testing.T) {
	srv := redistest.Start(t)
	keys := []Key{newKey(t, "k1")}
	ctx := context.Background()
	rc := srv.Client()
	tests := []struct {
		name string
		// splice changes Redis for the store s and key k; fetch returns
		// tok-1, tok-2, ... on each provider call.
		splice func(t *testing.T, s *Store, k providers.CacheKey, clock *fakeClock, fetch func(context.Context) (*providers.Credential, error))
		want   string
	}{
		{"older sealed value copied over the current key", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, fetch func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			old := rc.Get(ctx, ek).Val() // tok-1
			must(t, rc.Del(ctx, ek).Err())
			if c, err := s.Fetch(ctx, k, 0, fetch); err != nil || c.Fields[providers.FieldToken].Reveal() != "tok-2" {
				t.Fatalf("refill: %v", err)
			}
			must(t, rc.Set(ctx, ek, old, time.Hour).Err())
		}, RejectRollback},
		{"rejected credential copied back", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, fetch func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			old := rc.Get(ctx, ek).Val()
			c, err := s.Fetch(ctx, k, 0, fetch) // a hit: the entry this replica uses
			must(t, err)
			s.Forget(ctx, k, c) // the upstream rejected it
			must(t, rc.Set(ctx, ek, old, time.Hour).Err())
		}, RejectRollback},
		{"expired value copied back without a Redis expiry", func(t *testing.T, s *Store, k providers.CacheKey, clock *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			must(t, rc.Persist(ctx, ek).Err())
			clock.Advance(2 * time.Hour)
		}, RejectExpired},
		{"value copied to another key", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			// The entry of k is copied over the entry of the key the
			// test reads next (scope "other").
			from := k
			from.Scope = k.Scope[:len(k.Scope)-len("-other")]
			v := rc.Get(ctx, s.entryKey(keyHash(from))).Val()
			must(t, rc.Set(ctx, s.entryKey(keyHash(k)), v, time.Hour).Err())
		}, RejectUndecryptable},
		{"version raised in the header", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			v := []byte(rc.Get(ctx, ek).Val())
			v[len(magic)+1+len("k1")] ^= 0x80 // the version's top byte
			must(t, rc.Set(ctx, ek, v, time.Hour).Err())
		}, RejectUndecryptable},
		{"expiry pushed back in the header", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			v := []byte(rc.Get(ctx, ek).Val())
			v[len(magic)+1+len("k1")+8] ^= 0x01
			must(t, rc.Set(ctx, ek, v, time.Hour).Err())
		}, RejectUndecryptable},
		{"value copied from another namespace", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			ek := s.entryKey(keyHash(k))
			v := rc.Get(ctx, ek).Val()
			must(t, rc.Set(ctx, "other:cred:"+keyHash(k), v, time.Hour).Err())
			s.opts.Namespace = "other" // the store now reads the copy
		}, RejectUndecryptable},
		{"entry of the earlier format", func(t *testing.T, s *Store, k providers.CacheKey, _ *fakeClock, _ func(context.Context) (*providers.Credential, error)) {
			must(t, rc.Set(ctx, s.entryKey(keyHash(k)), "cg1\x02k1garbage", time.Hour).Err())
		}, RejectUndecryptable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &counts{}
			clock := &fakeClock{}
			clock.ns.Store(time.Now().UnixNano())
			c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 0})
			t.Cleanup(func() { _ = c.Close() })
			s, err := New(ctx, Options{Client: c, Namespace: "test", Keys: keys, Observer: obs, Now: clock.Now,
				HealthInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, LockTTL: time.Second})
			must(t, err)
			t.Cleanup(func() { _ = s.Close() })
			k := testKey
			k.Scope = fmt.Sprint("case-", i)
			var calls atomic.Int64
			fetch := func(context.Context) (*providers.Credential, error) {
				n := calls.Add(1)
				return secretCred(fmt.Sprint("tok-", n), clock.Now().Add(time.Hour)), nil
			}
			if c, err := s.Fetch(ctx, k, 0, fetch); err != nil || c.Fields[providers.FieldToken].Reveal() != "tok-1" {
				t.Fatalf("first fetch: %v", err)
			}
			if tt.name == "value copied to another key" {
				// The copy is read under another key's name.
				k.Scope += "-other"
			}
			tt.splice(t, s, k, clock, fetch)
			before := calls.Load()
			got, err := s.Fetch(ctx, k, 0, fetch)
			must(t, err)
			if calls.Load() != before+1 {
				t.Errorf("provider calls after the splice: %d, want %d (a miss)", calls.Load(), before+1)
			}
			if v := got.Fields[providers.FieldToken].Reveal(); v != fmt.Sprint("tok-", before+1) {
				t.Errorf("Fetch after the splice returned %s, want the freshly fetched tok-%d", v, before+1)
			}
			// Counted on every read of the spliced value (the miss and
			// the lock owner's second look), and for nothing else.
			obs.mu.Lock()
			rejected := obs.rejected
			obs.mu.Unlock()
			if len(rejected) != 1 || rejected[tt.want] == 0 {
				t.Errorf("rejected = %v, want only %s", rejected, tt.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
