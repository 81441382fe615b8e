package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/google/go-cmp/cmp"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recorder is a CacheObserver that counts events.
type recorder struct {
	mu      sync.Mutex
	lookups map[CacheResult]int
	fetches int
	errs    int
	provs   map[string]int
}

func (r *recorder) CacheLookup(_ CacheKey, res CacheResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lookups == nil {
		r.lookups = map[CacheResult]int{}
	}
	r.lookups[res]++
}

func (r *recorder) ProviderFetch(k CacheKey, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.provs == nil {
		r.provs = map[string]int{}
	}
	r.fetches++
	r.provs[k.Provider]++
	if err != nil {
		r.errs++
	}
}

func (r *recorder) lookupCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.lookups {
		n += v
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 10*time.Second, what, cond)
}

// inFlight reports whether a fetch is running for key.
func (c *Cache) inFlight(key CacheKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries.Peek(key)
	return ok && e.call != nil
}

func tok(v string, exp time.Time) *Credential {
	return &Credential{Fields: map[string]Secret{FieldToken: NewSecret(v)}, Expiry: exp}
}

func tokenOf(c *Credential) string {
	s, _ := c.Field(FieldToken)
	return s.Reveal()
}

var testKey = CacheKey{Credential: "stripe", Version: "v1", Provider: "fake"}

func newTestCache(t *testing.T, opts CacheOptions) *Cache {
	t.Helper()
	c := NewCache(opts)
	t.Cleanup(c.Close)
	return c
}

func TestCacheSingleFlight(t *testing.T) {
	clock := newFakeClock()
	rec := &recorder{}
	c := newTestCache(t, CacheOptions{Now: clock.Now, Observer: rec})
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context) (*Credential, error) {
		calls.Add(1)
		<-release
		return tok("v1", time.Time{}), nil
	}
	const n = 100
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cred, _, err := c.Get(context.Background(), testKey, fetch)
			errs[i] = err
			if err == nil {
				got[i] = tokenOf(cred)
			}
		})
	}
	// Every Get has looked the key up (and is now waiting) before the
	// fetch completes.
	waitFor(t, "100 lookups", func() bool { return rec.lookupCount() == n })
	close(release)
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Errorf("provider called %d times, want 1", c)
	}
	for i := range n {
		if errs[i] != nil || got[i] != "v1" {
			t.Fatalf("Get %d = %q, %v", i, got[i], errs[i])
		}
	}
	// A warm Get is a hit and calls nothing.
	_, hit, err := c.Get(context.Background(), testKey, fetch)
	if err != nil || !hit {
		t.Errorf("warm Get: hit=%v err=%v", hit, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if diff := cmp.Diff(map[CacheResult]int{CacheMiss: n, CacheHit: 1}, rec.lookups); diff != "" {
		t.Errorf("observed lookups (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"fake": 1}, rec.provs); diff != "" {
		t.Errorf("observed fetches per provider (-want +got):\n%s", diff)
	}
}

func TestCacheTTLAndRefreshAhead(t *testing.T) {
	tests := []struct {
		name      string
		opts      CacheOptions
		lifetime  time.Duration // 0 = no Expiry (DefaultTTL applies)
		noRefresh time.Duration // a Get this long after the fetch must not refresh
		refresh   time.Duration // a Get this long after the fetch must refresh
	}{
		{"own expiry", CacheOptions{RefreshAhead: 30 * time.Second}, 10 * time.Minute, 9*time.Minute + 29*time.Second, 9*time.Minute + 30*time.Second},
		{"default TTL", CacheOptions{DefaultTTL: time.Minute, RefreshAhead: 10 * time.Second}, 0, 49 * time.Second, 50 * time.Second},
		{"capped at a third of lifetime", CacheOptions{RefreshAhead: time.Minute}, 30 * time.Second, 19 * time.Second, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.opts.Now = clock.Now
			c := newTestCache(t, tt.opts)
			var calls atomic.Int32
			fetch := func(ctx context.Context) (*Credential, error) {
				n := calls.Add(1)
				var exp time.Time
				if tt.lifetime > 0 {
					exp = clock.Now().Add(tt.lifetime)
				}
				return tok(fmt.Sprintf("v%d", n), exp), nil
			}
			if cred, hit, err := c.Get(context.Background(), testKey, fetch); err != nil || hit || tokenOf(cred) != "v1" {
				t.Fatalf("first Get = %v, %v, %v", cred, hit, err)
			}
			clock.Advance(tt.noRefresh)
			cred, hit, err := c.Get(context.Background(), testKey, fetch)
			if err != nil || !hit || tokenOf(cred) != "v1" {
				t.Fatalf("Get before refresh window = %q, %v, %v", tokenOf(cred), hit, err)
			}
			if c.inFlight(testKey) {
				t.Fatalf("refresh started %s after fetch, before the window", tt.noRefresh)
			}
			clock.Advance(tt.refresh - tt.noRefresh)
			cred, hit, err = c.Get(context.Background(), testKey, fetch)
			if err != nil || !hit || tokenOf(cred) != "v1" {
				t.Fatalf("Get in refresh window = %q, %v, %v; want the cached v1 as a hit", tokenOf(cred), hit, err)
			}
			waitFor(t, "background refresh", func() bool { return !c.inFlight(testKey) && calls.Load() == 2 })
			cred, hit, err = c.Get(context.Background(), testKey, fetch)
			if err != nil || !hit || tokenOf(cred) != "v2" {
				t.Fatalf("Get after refresh = %q, %v, %v; want v2 hit", tokenOf(cred), hit, err)
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("provider called %d times, want 2", n)
			}
		})
	}
}

func TestCacheNeverReturnsExpired(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, CacheOptions{Now: clock.Now, RefreshAhead: -1, ErrorBackoff: -1})
	var fail atomic.Bool
	var calls atomic.Int32
	fetch := func(ctx context.Context) (*Credential, error) {
		n := calls.Add(1)
		if fail.Load() {
			return nil, fmt.Errorf("fake: down: %w", ErrUnavailable)
		}
		return tok(fmt.Sprintf("v%d", n), clock.Now().Add(time.Minute)), nil
	}
	if _, _, err := c.Get(context.Background(), testKey, fetch); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // exactly at expiry: expired
	fail.Store(true)
	cred, hit, err := c.Get(context.Background(), testKey, fetch)
	if err == nil || cred != nil || hit {
		t.Fatalf("Get at expiry with a failing provider = %v, %v, %v; want an error", cred, hit, err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v does not wrap ErrUnavailable", err)
	}
	fail.Store(false)
	cred, hit, err = c.Get(context.Background(), testKey, fetch)
	if err != nil || hit || tokenOf(cred) != "v3" {
		t.Fatalf("Get after recovery = %q, %v, %v; want fresh v3", tokenOf(cred), hit, err)
	}
}

func TestCacheRejectsBadProviderResults(t *testing.T) {
	clock := newFakeClock()
	tests := []struct {
		name    string
		fetch   func(context.Context) (*Credential, error)
		wantErr string
	}{
		{"nil credential", func(context.Context) (*Credential, error) { return nil, nil }, "returned no credential"},
		{"already expired", func(context.Context) (*Credential, error) { return tok("x", clock.Now()), nil }, "already expired"},
		{"panic", func(context.Context) (*Credential, error) { panic("secret-ish " + testSecretValue) }, "panicked"},
		{"already revoked", func(context.Context) (*Credential, error) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			c := tok("x", time.Time{})
			c.Revoked = ctx
			return c, nil
		}, "it has revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, CacheOptions{Now: clock.Now})
			_, _, err := c.Get(context.Background(), testKey, tt.fetch)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), testSecretValue) {
				t.Errorf("Get error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCacheErrorBackoff(t *testing.T) {
	clock := newFakeClock()
	rec := &recorder{}
	c := newTestCache(t, CacheOptions{Now: clock.Now, ErrorBackoff: 5 * time.Second, Observer: rec})
	var calls atomic.Int32
	sentinel := errors.New("fake: vault sealed")
	fetch := func(ctx context.Context) (*Credential, error) {
		calls.Add(1)
		return nil, fmt.Errorf("%w: %w", sentinel, ErrUnavailable)
	}
	elapsed := time.Duration(0)
	for i, adv := range []time.Duration{0, time.Second, 3 * time.Second} {
		clock.Advance(adv)
		elapsed += adv
		_, _, err := c.Get(context.Background(), testKey, fetch)
		if !errors.Is(err, sentinel) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d error = %v, want the provider's error", i, err)
		}
		// The backoff left is what a client should wait (Retry-After).
		if ra, ok := RetryAfter(err, clock.Now()); !ok || ra != 5*time.Second-elapsed {
			t.Errorf("Get %d: RetryAfter = %v, %v; want %v", i, ra, ok, 5*time.Second-elapsed)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("provider called %d times within the backoff, want 1", n)
	}
	clock.Advance(time.Second) // 5s after the failure: backoff over
	if _, _, err := c.Get(context.Background(), testKey, fetch); !errors.Is(err, sentinel) {
		t.Fatalf("Get after backoff error = %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("provider called %d times after the backoff, want 2", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if diff := cmp.Diff(map[CacheResult]int{CacheMiss: 2, CacheError: 2}, rec.lookups); diff != "" {
		t.Errorf("observed lookups (-want +got):\n%s", diff)
	}
	if rec.errs != 2 {
		t.Errorf("observed %d fetch errors, want 2", rec.errs)
	}
}

func TestCacheFailedRefreshKeepsValidCredential(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, CacheOptions{Now: clock.Now, RefreshAhead: 30 * time.Second, ErrorBackoff: 5 * time.Second})
	var calls atomic.Int32
	fetch := func(ctx context.Context) (*Credential, error) {
		if calls.Add(1) == 1 {
			return tok("v1", clock.Now().Add(time.Minute)), nil
		}
		return nil, errors.New("fake: down")
	}
	if _, _, err := c.Get(context.Background(), testKey, fetch); err != nil {
		t.Fatal(err)
	}
	clock.Advance(45 * time.Second) // in the refresh window
	if cred, hit, err := c.Get(context.Background(), testKey, fetch); err != nil || !hit || tokenOf(cred) != "v1" {
		t.Fatalf("Get = %q %v %v", tokenOf(cred), hit, err)
	}
	waitFor(t, "failed refresh", func() bool { return calls.Load() == 2 && !c.inFlight(testKey) })
	// Still valid: served, and no new refresh within the backoff.
	if cred, hit, err := c.Get(context.Background(), testKey, fetch); err != nil || !hit || tokenOf(cred) != "v1" {
		t.Fatalf("Get after failed refresh = %q %v %v", tokenOf(cred), hit, err)
	}
	if c.inFlight(testKey) || calls.Load() != 2 {
		t.Errorf("refresh retried within the backoff")
	}
	clock.Advance(15 * time.Second) // expired now
	if cred, _, err := c.Get(context.Background(), testKey, fetch); err == nil {
		t.Errorf("Get after expiry returned %q, want an error", tokenOf(cred))
	}
}

// TestCacheLogsFailedRefresh: a background refresh that fails while the
// cached credential is still valid is logged when it happens, once per
// backoff, without the credential's value.
func TestCacheLogsFailedRefresh(t *testing.T) {
	clock := newFakeClock()
	var logs lockedLog
	c := newTestCache(t, CacheOptions{Now: clock.Now, RefreshAhead: 30 * time.Second, ErrorBackoff: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	var calls atomic.Int32
	fetch := func(ctx context.Context) (*Credential, error) {
		if calls.Add(1) == 1 {
			return tok("secret-v1-value", clock.Now().Add(time.Minute)), nil
		}
		return nil, errors.New("fake: token endpoint 500")
	}
	if _, _, err := c.Get(context.Background(), testKey, fetch); err != nil {
		t.Fatal(err)
	}
	if logs.String() != "" {
		t.Fatalf("logged on success: %s", logs.String())
	}
	clock.Advance(45 * time.Second) // in the refresh window
	_, _, _ = c.Get(context.Background(), testKey, fetch)
	waitFor(t, "the failed refresh to be logged", func() bool { return strings.Contains(logs.String(), "credential refresh failed") })
	got := logs.String()
	for _, want := range []string{`credential=stripe`, `provider=fake`, `expires_in=15s`, `token endpoint 500`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line lacks %q: %s", want, got)
		}
	}
	if strings.Contains(got, "secret-v1-value") {
		t.Errorf("the log holds the credential value: %s", got)
	}
	// Within the backoff nothing is retried, so nothing more is logged.
	_, _, _ = c.Get(context.Background(), testKey, fetch)
	if n := strings.Count(logs.String(), "credential refresh failed"); n != 1 {
		t.Errorf("%d log lines within one backoff, want 1", n)
	}
}

// lockedLog is a concurrency-safe log sink.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCacheCallerCancellation(t *testing.T) {
	c := newTestCache(t, CacheOptions{Now: newFakeClock().Now})
	release := make(chan struct{})
	started := make(chan struct{})
	var fetchCtxErr atomic.Value
	fetch := func(ctx context.Context) (*Credential, error) {
		close(started)
		<-release
		fetchCtxErr.Store(fmt.Sprint(ctx.Err()))
		return tok("v1", time.Time{}), nil
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctxA, testKey, fetch)
		errA <- err
	}()
	<-started
	type result struct {
		cred *Credential
		err  error
	}
	resB := make(chan result, 1)
	go func() {
		cred, _, err := c.Get(context.Background(), testKey, fetch)
		resB <- result{cred, err}
	}()
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	r := <-resB
	if r.err != nil || tokenOf(r.cred) != "v1" {
		t.Errorf("other waiter got %v, %v; want v1", r.cred, r.err)
	}
	if got := fetchCtxErr.Load(); got != "<nil>" {
		t.Errorf("fetch context error = %v, want nil (detached from the cancelled caller)", got)
	}
}

func TestCacheFetchTimeout(t *testing.T) {
	c := newTestCache(t, CacheOptions{FetchTimeout: 20 * time.Millisecond})
	fetch := func(ctx context.Context) (*Credential, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	_, _, err := c.Get(context.Background(), testKey, fetch)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get error = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestCacheEviction(t *testing.T) {
	c := newTestCache(t, CacheOptions{Now: newFakeClock().Now, MaxEntries: 3})
	calls := map[string]int{}
	var mu sync.Mutex
	get := func(name string) {
		t.Helper()
		k := CacheKey{Credential: name}
		_, _, err := c.Get(context.Background(), k, func(context.Context) (*Credential, error) {
			mu.Lock()
			calls[name]++
			mu.Unlock()
			return tok(name, time.Time{}), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b", "c", "a", "d", "e"} { // a used again: b and c are the oldest
		get(n)
		if l := c.Len(); l > 3 {
			t.Fatalf("Len = %d after %s, want ≤ 3", l, n)
		}
	}
	get("a") // still cached
	get("b") // evicted, fetched again
	want := map[string]int{"a": 1, "b": 2, "c": 1, "d": 1, "e": 1}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("fetches per key (-want +got):\n%s", diff)
	}
}

func TestCacheInvalidate(t *testing.T) {
	c := newTestCache(t, CacheOptions{Now: newFakeClock().Now})
	var calls atomic.Int32
	fetch := func(context.Context) (*Credential, error) {
		return tok(fmt.Sprintf("v%d", calls.Add(1)), time.Time{}), nil
	}
	for i, want := range []string{"v1", "v1", "", "v2"} {
		if want == "" {
			c.Invalidate(testKey)
			continue
		}
		cred, _, err := c.Get(context.Background(), testKey, fetch)
		if err != nil || tokenOf(cred) != want {
			t.Fatalf("step %d: Get = %q, %v; want %s", i, tokenOf(cred), err, want)
		}
	}
}

// TestCacheForget: a rejected credential is dropped once; a second caller
// rejecting the same old credential keeps the one fetched since.
func TestCacheForget(t *testing.T) {
	c := newTestCache(t, CacheOptions{Now: newFakeClock().Now})
	var calls atomic.Int32
	fetch := func(context.Context) (*Credential, error) {
		return tok(fmt.Sprintf("v%d", calls.Add(1)), time.Time{}), nil
	}
	old, _, err := c.Get(context.Background(), testKey, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Forget(testKey, old) {
		t.Fatal("Forget(old) dropped nothing")
	}
	fresh, _, err := c.Get(context.Background(), testKey, fetch)
	if err != nil || tokenOf(fresh) != "v2" {
		t.Fatalf("after Forget: %q, %v; want v2", tokenOf(fresh), err)
	}
	if c.Forget(testKey, old) {
		t.Error("Forget(old) dropped the credential fetched since")
	}
	if got, _, _ := c.Get(context.Background(), testKey, fetch); tokenOf(got) != "v2" || calls.Load() != 2 {
		t.Errorf("Get = %q after %d fetches; want v2 after 2", tokenOf(got), calls.Load())
	}
}

// TestCacheDropsRevoked: a credential whose provider revokes it (Vault
// refused to renew its lease, or revoked it with its parent token) is
// never returned again, whether a Get comes first or not, and the drop
// reaches the shared cache.
func TestCacheDropsRevoked(t *testing.T) {
	for _, tt := range []struct {
		name string
		// check runs after the revocation and before the next Get.
		check func(t *testing.T, c *Cache, shared *forgetRecorder)
	}{
		{"dropped without a Get", func(t *testing.T, c *Cache, shared *forgetRecorder) {
			waitFor(t, "the revoked credential to be dropped", func() bool { return c.Len() == 0 })
			waitFor(t, "the shared cache to be told", func() bool { return shared.count() == 1 })
		}},
		{"next Get fetches anew", func(*testing.T, *Cache, *forgetRecorder) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			shared := &forgetRecorder{}
			c := newTestCache(t, CacheOptions{Now: newFakeClock().Now, Shared: shared})
			var calls atomic.Int32
			var revoke context.CancelCauseFunc
			fetch := func(context.Context) (*Credential, error) {
				cred := tok(fmt.Sprintf("v%d", calls.Add(1)), time.Time{})
				cred.Revoked, revoke = context.WithCancelCause(context.Background())
				return cred, nil
			}
			if got, _, err := c.Get(context.Background(), testKey, fetch); err != nil || tokenOf(got) != "v1" {
				t.Fatalf("first Get = %q, %v", tokenOf(got), err)
			}
			revoke(errors.New("lease renewal refused"))
			tt.check(t, c, shared)
			got, hit, err := c.Get(context.Background(), testKey, fetch)
			if err != nil || tokenOf(got) != "v2" || hit {
				t.Errorf("Get after revocation = %q (hit %v), %v; want a fresh v2", tokenOf(got), hit, err)
			}
		})
	}
}

// forgetRecorder is a SharedCache that only counts Forget calls.
type forgetRecorder struct{ n atomic.Int32 }

func (f *forgetRecorder) Fetch(ctx context.Context, _ CacheKey, _ time.Duration, fetch func(context.Context) (*Credential, error)) (*Credential, error) {
	return fetch(ctx)
}
func (f *forgetRecorder) Forget(context.Context, CacheKey, *Credential)        { f.n.Add(1) }
func (f *forgetRecorder) InvalidateCredential(context.Context, string, string) {}
func (f *forgetRecorder) Watch(func(Invalidation))                             {}
func (f *forgetRecorder) count() int                                           { return int(f.n.Load()) }

func TestCacheClose(t *testing.T) {
	base := runtime.NumGoroutine()
	c := NewCache(CacheOptions{Now: newFakeClock().Now})
	started := make(chan struct{})
	fetch := func(ctx context.Context) (*Credential, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), testKey, fetch)
		errc <- err
	}()
	<-started
	c.Close() // returns only after the fetch goroutine has ended
	if err := <-errc; !errors.Is(err, ErrCacheClosed) {
		t.Errorf("waiter got %v, want ErrCacheClosed", err)
	}
	if c.Len() != 0 {
		t.Errorf("Len after Close = %d", c.Len())
	}
	c.Close() // idempotent
	waitFor(t, "cache goroutines to exit", func() bool { return runtime.NumGoroutine() <= base+1 })
	// After Close, Get still works, uncached.
	var calls atomic.Int32
	direct := func(context.Context) (*Credential, error) { calls.Add(1); return tok("v", time.Time{}), nil }
	for range 2 {
		if cred, hit, err := c.Get(context.Background(), testKey, direct); err != nil || hit || tokenOf(cred) != "v" {
			t.Fatalf("Get after Close = %v %v %v", cred, hit, err)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("Get after Close cached its result")
	}
}

func BenchmarkCacheGetWarm(b *testing.B) {
	c := NewCache(CacheOptions{})
	defer c.Close()
	fetch := func(context.Context) (*Credential, error) { return tok("v", time.Time{}), nil }
	ctx := context.Background()
	if _, _, err := c.Get(ctx, testKey, fetch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, hit, err := c.Get(ctx, testKey, fetch); err != nil || !hit {
				b.Fatal("warm Get missed")
			}
		}
	})
}

func TestCacheInvalidateCredential(t *testing.T) {
	c := newTestCache(t, CacheOptions{Now: newFakeClock().Now})
	var calls atomic.Int32
	fetch := func(context.Context) (*Credential, error) {
		return tok(fmt.Sprintf("v%d", calls.Add(1)), time.Time{}), nil
	}
	keys := []CacheKey{
		{Credential: "db", Version: "1", Scope: "a", Provider: "p"},
		{Credential: "db", Version: "1", Scope: "b", Provider: "p"},
		{Credential: "db", Version: "2", Scope: "a", Provider: "p"},
		{Credential: "other", Version: "1", Provider: "p"},
	}
	for _, k := range keys {
		if _, _, err := c.Get(context.Background(), k, fetch); err != nil {
			t.Fatal(err)
		}
	}
	c.InvalidateCredential("db", "1")
	var hits []bool
	for _, k := range keys {
		_, hit, err := c.Get(context.Background(), k, fetch)
		if err != nil {
			t.Fatal(err)
		}
		hits = append(hits, hit)
	}
	if diff := cmp.Diff([]bool{false, false, true, true}, hits); diff != "" {
		t.Errorf("cache hits after invalidating db version 1 (-want +got):\n%s", diff)
	}
}
