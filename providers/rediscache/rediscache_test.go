package rediscache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// waitFor polls cond until it is true or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.True(t, timeout, what, cond)
}

func newKey(t *testing.T, id string) Key {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: b}
}

// counts is an Observer.
type counts struct {
	mu      sync.Mutex
	lookups map[string]int
	errs    map[string]int
	up      []bool

	rejected map[string]int
}

func (c *counts) RedisUp(up bool) { c.mu.Lock(); c.up = append(c.up, up); c.mu.Unlock() }
func (c *counts) RedisError(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errs == nil {
		c.errs = map[string]int{}
	}
	c.errs[op]++
}
func (c *counts) SharedLookup(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lookups == nil {
		c.lookups = map[string]int{}
	}
	c.lookups[r]++
}
func (c *counts) lookup(r string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.lookups[r] }
func (c *counts) Rejected(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rejected == nil {
		c.rejected = map[string]int{}
	}
	c.rejected[r]++
}

func newStore(t *testing.T, srv *redistest.Server, keys []Key, obs Observer) *Store {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 0, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	s, err := New(context.Background(), Options{
		Client: c, Namespace: "test", Keys: keys, Observer: obs,
		HealthInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, LockTTL: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var testKey = providers.CacheKey{Credential: "stripe", Version: "v1", Provider: "static"}

func secretCred(v string, exp time.Time) *providers.Credential {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}, Expiry: exp}
}

func TestFetchSingleFlightAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	k := []Key{newKey(t, "k1")}
	a, b := newStore(t, srv, k, nil), newStore(t, srv, k, nil)
	const n = 40
	var calls, started atomic.Int64
	release := make(chan struct{})
	fetch := func(ctx context.Context) (*providers.Credential, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return secretCred("tok-shared", time.Now().Add(time.Hour)), nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			started.Add(1)
			cred, err := s.Fetch(ctx, testKey, 30*time.Second, fetch)
			if err == nil && cred.Fields[providers.FieldToken].Reveal() != "tok-shared" {
				err = errors.New("wrong credential")
			}
			errs <- err
		}()
	}
	waitFor(t, 5*time.Second, "every caller started and one fetch running", func() bool { return started.Load() == n && calls.Load() == 1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("%d provider calls for %d concurrent fetches over two replicas, want 1", got, n)
	}
}

func TestEntriesAreSealedAndExpire(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, []Key{newKey(t, "k1")}, nil)
	secret := "cg-secret-" + base64.RawURLEncoding.EncodeToString([]byte("plaintext-marker-123"))
	exp := time.Now().Add(time.Minute)
	ctx := context.Background()
	if _, err := s.Fetch(ctx, testKey, 0, func(context.Context) (*providers.Credential, error) { return secretCred(secret, exp), nil }); err != nil {
		t.Fatal(err)
	}
	dump, err := srv.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dump) == 0 {
		t.Fatal("nothing in Redis after a fetch")
	}
	for k, v := range dump {
		for _, needle := range []string{secret, secret[len(secret)-12:], base64.StdEncoding.EncodeToString([]byte(secret))} {
			if strings.Contains(k, needle) || strings.Contains(v, needle) {
				t.Errorf("Redis key %q or its value holds the secret in plaintext", k)
			}
		}
		if !strings.HasPrefix(k, "test:") {
			t.Errorf("key %q is outside the namespace", k)
		}
	}
	ek := s.entryKey(keyHash(testKey))
	pttl, err := srv.Client().PTTL(ctx, ek).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Until(exp) - DefaultExpirySkew
	if pttl <= 0 || pttl > want+time.Second || pttl < want-5*time.Second {
		t.Errorf("entry expires in %s, want about %s (credential expiry minus skew)", pttl, want)
	}

	// An entry moved to another key does not open (the key name is bound).
	v, _ := srv.Client().Get(ctx, ek).Bytes()
	if _, err := s.seal.open(ek+"x", v); err == nil {
		t.Error("an entry opened under another key name")
	}
	// A credential without expiry gets DefaultTTL.
	k2 := testKey
	k2.Scope = "no-expiry"
	if _, err := s.Fetch(ctx, k2, 0, func(context.Context) (*providers.Credential, error) { return secretCred(secret, time.Time{}), nil }); err != nil {
		t.Fatal(err)
	}
	pttl, _ = srv.Client().PTTL(ctx, s.entryKey(keyHash(k2))).Result()
	if pttl <= DefaultDefaultTTL-10*time.Second || pttl > DefaultDefaultTTL {
		t.Errorf("entry without expiry expires in %s, want about %s", pttl, DefaultDefaultTTL)
	}
	// A credential about to expire is not shared at all.
	k3 := testKey
	k3.Scope = "short"
	if _, err := s.Fetch(ctx, k3, 0, func(context.Context) (*providers.Credential, error) {
		return secretCred(secret, time.Now().Add(DefaultExpirySkew/2)), nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, _ := srv.Client().Exists(ctx, s.entryKey(keyHash(k3))).Result(); n != 0 {
		t.Error("a credential expiring within the skew was stored")
	}
}

func TestKeyRotation(t *testing.T) {
	srv := redistest.Start(t)
	old, next := newKey(t, "2026-01"), newKey(t, "2026-02")
	ctx := context.Background()
	w := newStore(t, srv, []Key{old}, nil)
	if _, err := w.Fetch(ctx, testKey, 0, func(context.Context) (*providers.Credential, error) {
		return secretCred("tok-old", time.Now().Add(time.Hour)), nil
	}); err != nil {
		t.Fatal(err)
	}
	// Rotated: next seals, old still opens.
	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		calls.Add(1)
		return secretCred("tok-new", time.Now().Add(time.Hour)), nil
	}
	r := newStore(t, srv, []Key{next, old}, nil)
	cred, err := r.Fetch(ctx, testKey, 0, fetch)
	if err != nil || cred.Fields[providers.FieldToken].Reveal() != "tok-old" || calls.Load() != 0 {
		t.Fatalf("after rotation the old entry was not read: err=%v calls=%d", err, calls.Load())
	}
	// Once old is retired, its entries are fetched anew and resealed.
	retired := newStore(t, srv, []Key{next}, nil)
	cred, err = retired.Fetch(ctx, testKey, 0, fetch)
	if err != nil || cred.Fields[providers.FieldToken].Reveal() != "tok-new" || calls.Load() != 1 {
		t.Fatalf("an entry sealed with a retired key: err=%v calls=%d, want a new fetch", err, calls.Load())
	}
	v, _ := srv.Client().Get(ctx, retired.entryKey(keyHash(testKey))).Bytes()
	if !bytes.HasPrefix(v, []byte("cg2\x072026-02")) {
		t.Errorf("the new entry is not sealed with the first key: %q", v[:min(len(v), 12)])
	}
}

func TestStaleEntryIsRefreshed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, []Key{newKey(t, "k")}, nil)
	ctx := context.Background()
	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		n := calls.Add(1)
		return secretCred(fmt.Sprintf("tok-%d", n), time.Now().Add(time.Minute)), nil
	}
	if _, err := s.Fetch(ctx, testKey, 10*time.Second, fetch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, testKey, 10*time.Second, fetch); err != nil || calls.Load() != 1 {
		t.Fatalf("second fetch: err=%v calls=%d, want a hit", err, calls.Load())
	}
	// With a refresh-ahead window beyond the remaining life (capped at a
	// third of the lifetime, 20s here) the entry is still used ...
	if _, err := s.Fetch(ctx, testKey, time.Hour, fetch); err != nil || calls.Load() != 1 {
		t.Fatalf("err=%v calls=%d, want a hit", err, calls.Load())
	}
	// ... until the clock reaches the refresh point.
	s.opts.Now = func() time.Time { return time.Now().Add(52 * time.Second) }
	cred, err := s.Fetch(ctx, testKey, 10*time.Second, fetch)
	if err != nil || calls.Load() != 2 || cred.Fields[providers.FieldToken].Reveal() != "tok-2" {
		t.Fatalf("err=%v calls=%d, want a refresh", err, calls.Load())
	}
}

func TestRedisDownFallsBackAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	obs := &counts{}
	s := newStore(t, srv, []Key{newKey(t, "k")}, obs)
	ctx := context.Background()
	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		calls.Add(1)
		return secretCred("tok", time.Now().Add(time.Hour)), nil
	}
	if _, err := s.Fetch(ctx, testKey, 0, fetch); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := range 5 {
		start := time.Now()
		if _, err := s.Fetch(ctx, testKey, 0, fetch); err != nil {
			t.Fatalf("fetch %d with Redis down: %v", i, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("fetch %d with Redis down took %s", i, d)
		}
	}
	if s.Up() {
		t.Error("Up() with Redis stopped")
	}
	if calls.Load() != 6 || obs.lookup("bypass") < 4 {
		t.Errorf("calls=%d bypass=%d: with Redis down every fetch goes to the provider", calls.Load(), obs.lookup("bypass"))
	}
	srv.Restart()
	waitFor(t, 5*time.Second, "Up() after restart", s.Up)
	before := calls.Load()
	for range 3 {
		if _, err := s.Fetch(ctx, testKey, 0, fetch); err != nil {
			t.Fatal(err)
		}
	}
	if d := calls.Load() - before; d != 1 {
		t.Errorf("%d provider calls after recovery for 3 fetches, want 1 (shared again)", d)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.up) < 3 || obs.up[0] != true || obs.up[1] != false || obs.up[len(obs.up)-1] != true {
		t.Errorf("up transitions %v, want true, false, ..., true", obs.up)
	}
}

func TestStartsWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s := newStore(t, srv, []Key{newKey(t, "k")}, nil)
	if s.Up() {
		t.Fatal("Up() with no Redis")
	}
	if _, err := s.Fetch(context.Background(), testKey, 0, func(context.Context) (*providers.Credential, error) {
		return secretCred("tok", time.Time{}), nil
	}); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	waitFor(t, 5*time.Second, "Up() once Redis started", s.Up)
}

func TestLockOwnerDies(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, []Key{newKey(t, "k")}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A replica took the lock and died: nobody releases it.
	if err := srv.Client().Set(ctx, s.lockKey(keyHash(testKey)), "dead-owner", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	start := time.Now()
	cred, err := s.Fetch(ctx, testKey, 0, func(context.Context) (*providers.Credential, error) {
		calls.Add(1)
		return secretCred("tok", time.Now().Add(time.Hour)), nil
	})
	if err != nil || cred == nil || calls.Load() != 1 {
		t.Fatalf("err=%v calls=%d", err, calls.Load())
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("took %s; want to wait for the dead lock (300ms) and no much longer", d)
	}
	// Our own lock was released by us only: the key is gone.
	if n, _ := srv.Client().Exists(ctx, s.lockKey(keyHash(testKey))).Result(); n != 0 {
		t.Error("lock left behind")
	}
}

func TestLockReleasedOnlyByOwner(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	c.Set(ctx, "l", "mine", time.Minute)
	if n, _ := compareAndDelete.Run(ctx, c, []string{"l"}, "theirs").Int(); n != 0 {
		t.Error("a foreign token released the lock")
	}
	if n, _ := compareAndDelete.Run(ctx, c, []string{"l"}, "mine").Int(); n != 1 {
		t.Error("the owner could not release its lock")
	}
}

func TestInvalidationPropagates(t *testing.T) {
	srv := redistest.Start(t)
	k := []Key{newKey(t, "k")}
	a, b := newStore(t, srv, k, nil), newStore(t, srv, k, nil)
	var mu sync.Mutex
	var got []providers.Invalidation
	b.Watch(func(inv providers.Invalidation) { mu.Lock(); got = append(got, inv); mu.Unlock() })
	a.Watch(func(providers.Invalidation) { t.Error("a replica received its own invalidation") })
	ctx := context.Background()
	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		n := calls.Add(1)
		return secretCred(fmt.Sprintf("tok-%d", n), time.Now().Add(time.Hour)), nil
	}
	credA, _ := a.Fetch(ctx, testKey, 0, fetch)
	if _, err := b.Fetch(ctx, testKey, 0, fetch); err != nil || calls.Load() != 1 {
		t.Fatalf("err=%v calls=%d", err, calls.Load())
	}
	// Forget of a credential that is not the current one does nothing.
	a.Forget(ctx, testKey, secretCred("other", time.Time{}))
	a.Forget(ctx, testKey, credA)
	waitFor(t, 10*time.Second, "b told to forget", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	if got[0].Key != testKey {
		t.Errorf("b was told %+v, want key %+v", got[0], testKey)
	}
	mu.Unlock()
	if n, _ := srv.Client().Exists(ctx, a.entryKey(keyHash(testKey))).Result(); n != 0 {
		t.Error("the rejected entry is still in Redis")
	}
	if cred, _ := b.Fetch(ctx, testKey, 0, fetch); calls.Load() != 2 || cred.Fields[providers.FieldToken].Reveal() != "tok-2" {
		t.Errorf("after Forget: calls=%d, want a new fetch", calls.Load())
	}

	other := testKey
	other.Scope = "workload-b"
	if _, err := a.Fetch(ctx, other, 0, fetch); err != nil {
		t.Fatal(err)
	}
	a.InvalidateCredential(ctx, testKey.Credential, testKey.Version)
	waitFor(t, 10*time.Second, "b told to drop the credential", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	mu.Lock()
	if got[1].Credential != testKey.Credential || got[1].Version != testKey.Version {
		t.Errorf("b was told %+v", got[1])
	}
	mu.Unlock()
	dump, _ := srv.Dump(ctx)
	for k := range dump {
		if strings.Contains(k, ":cred:") {
			t.Errorf("entry %s survived InvalidateCredential", k)
		}
	}
}

// TestWithCache runs the in-process Cache in front of a Store: an L1 hit
// never touches Redis.
func TestWithCache(t *testing.T) {
	srv := redistest.Start(t)
	obs := &counts{}
	s := newStore(t, srv, []Key{newKey(t, "k")}, obs)
	c := providers.NewCache(providers.CacheOptions{Shared: s})
	defer c.Close()
	ctx := context.Background()
	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		calls.Add(1)
		return secretCred("tok", time.Now().Add(time.Hour)), nil
	}
	for range 20 {
		if _, _, err := c.Get(ctx, testKey, fetch); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 || obs.lookup("miss") != 1 || obs.lookup("hit") != 0 {
		t.Errorf("calls=%d lookups=%v, want one shared lookup for 20 Gets", calls.Load(), obs.lookups)
	}
}

func TestSealerRejectsBadKeys(t *testing.T) {
	for _, keys := range [][]Key{nil, {{ID: "", Secret: make([]byte, 32)}}, {{ID: "a", Secret: make([]byte, 16)}}, {{ID: "a", Secret: make([]byte, 32)}, {ID: "a", Secret: make([]byte, 32)}}} {
		if _, err := newSealer(keys); err == nil {
			t.Errorf("newSealer(%d keys) accepted bad keys", len(keys))
		}
	}
}

// TestOnCluster runs two replicas against a (one-node) Redis Cluster
// through a ClusterClient, as cache.redis does with several addresses:
// the lock and compare scripts touch one key each, invalidations go over
// pub/sub, and deleting a credential's entries scans every master.
func TestOnCluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	k := []Key{newKey(t, "k")}
	newClusterStore := func() *Store {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
		t.Cleanup(func() { _ = c.Close() })
		s, err := New(context.Background(), Options{
			Client: c, Namespace: "cluster", Keys: k,
			HealthInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, LockTTL: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := newClusterStore(), newClusterStore()
	var mu sync.Mutex
	var got []providers.Invalidation
	b.Watch(func(inv providers.Invalidation) { mu.Lock(); got = append(got, inv); mu.Unlock() })

	var calls atomic.Int64
	fetch := func(context.Context) (*providers.Credential, error) {
		n := calls.Add(1)
		return secretCred(fmt.Sprintf("tok-%d", n), time.Now().Add(time.Hour)), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cred, err := s.Fetch(ctx, testKey, 10*time.Second, fetch); err != nil || cred.Fields[providers.FieldToken].Reveal() != "tok-1" {
				t.Errorf("fetch: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d provider calls over two replicas on a cluster, want 1", n)
	}
	other := testKey
	other.Scope = "workload-b"
	if _, err := a.Fetch(ctx, other, 0, fetch); err != nil {
		t.Fatal(err)
	}
	a.InvalidateCredential(ctx, testKey.Credential, testKey.Version)
	waitFor(t, 5*time.Second, "b told to drop the credential over cluster pub/sub", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	dump, err := srv.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for key := range dump {
		if strings.Contains(key, ":cred:") {
			t.Errorf("entry %s survived InvalidateCredential on the cluster", key)
		}
	}
}

// TestSealKeepsHosts: a credential's Hosts (the only hosts it may be sent
// to) survive the Redis tier, or a replica reading it would send it
// anywhere its rule allows.
func TestSealKeepsHosts(t *testing.T) {
	s, err := newSealer([]Key{{ID: "k1", Secret: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	cred := secretCred("tok", time.Now().Add(time.Hour))
	cred.Hosts = []string{"acme.my.salesforce.com"}
	b, err := s.seal("key", cred, time.Now(), 1, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.open("key", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.cred.Hosts) != 1 || got.cred.Hosts[0] != "acme.my.salesforce.com" {
		t.Errorf("Hosts after the Redis tier = %v", got.cred.Hosts)
	}
}

// TestListeningWhenNewReturns: a Store listens for the fleet's messages
// by the time New returns, so a forget published right after (another
// replica's, for a credential this one is about to cache) is not missed:
// Redis counts each new Store as a subscriber at once.
func TestListeningWhenNewReturns(t *testing.T) {
	srv := redistest.Start(t)
	k := []Key{newKey(t, "k")}
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		s := newStore(t, srv, k, nil)
		n, err := srv.Client().PubSubNumSub(ctx, s.events).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[s.events] != int64(i) {
			t.Fatalf("after the %d-th New, Redis counts %d subscribers", i, n[s.events])
		}
	}
}
