package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fairlru"
	"github.com/credgate/credgate/internal/module"
)

// Cache defaults, applied by NewCache to zero CacheOptions fields.
const (
	DefaultCacheTTL          = 5 * time.Minute
	DefaultCacheRefreshAhead = 30 * time.Second
	DefaultCacheErrorBackoff = 5 * time.Second
	DefaultCacheFetchTimeout = 15 * time.Second
	DefaultCacheMaxEntries   = 10000
	// DefaultCacheMaxTTL is the longest a credential is kept, whatever
	// its own Expiry says: a day. Providers' credentials live minutes to
	// hours (an OAuth2 token an hour, STS at most 12h); an endpoint that
	// says expires_in=2147483647 (68 years) is broken or hostile, and
	// keeping its token that long would outlive any rotation or
	// revocation the provider could tell of.
	DefaultCacheMaxTTL = 24 * time.Hour
)

// ErrCacheClosed is returned to callers waiting on a fetch that Close
// cancelled.
var ErrCacheClosed = errors.New("credential cache closed")

// BackoffError wraps a fetch error the cache remembers: Gets for the same
// key return it without calling the provider until Until. It unwraps to
// the fetch error, so errors.Is(err, ErrUnavailable) still works.
type BackoffError struct {
	// Credential is the credential's name.
	Credential string
	// Until is when the next Get calls the provider again.
	Until time.Time
	// Err is the fetch error.
	Err error
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("%v (the provider is asked again after the error backoff)", e.Err)
}

// Unwrap returns the fetch error.
func (e *BackoffError) Unwrap() error { return e.Err }

// RetryAfter returns how long after now a failed Get's credential is
// worth asking for again: the error backoff the cache has in force for
// it, and false when err carries none.
func RetryAfter(err error, now time.Time) (time.Duration, bool) {
	var be *BackoffError
	if !errors.As(err, &be) {
		return 0, false
	}
	return max(be.Until.Sub(now), 0), true
}

// CacheOptions configure a Cache. Zero fields take the defaults above.
type CacheOptions struct {
	// DefaultTTL is how long a credential without its own Expiry is kept.
	// It is at most MaxTTL. The cache hands such a credential to Shared,
	// and out, with that Expiry set (capExpiry), so it expires there too.
	DefaultTTL time.Duration
	// MaxTTL is the longest a credential is kept, in this cache and in
	// Shared, whatever its Expiry: a credential whose Expiry is later is
	// kept as if it expired MaxTTL after it was fetched (the cache hands
	// out a copy with Expiry moved; Fields and the rest are shared), and
	// refreshed ahead of that. Default DefaultCacheMaxTTL.
	MaxTTL time.Duration
	// RefreshAhead is how long before expiry a Get starts a background
	// refresh while still returning the cached value. It is capped at a
	// third of the credential's lifetime. Negative disables refresh ahead.
	RefreshAhead time.Duration
	// ErrorBackoff is how long a failed fetch is remembered: Gets within
	// it return the same error without calling the provider. Negative
	// disables error caching.
	ErrorBackoff time.Duration
	// FetchTimeout bounds each provider call.
	FetchTimeout time.Duration
	// MaxEntries bounds the number of cached keys. When a new key would
	// exceed it, the least recently used entry of the largest holder goes
	// (Binding.Holder: the workload of a per-caller credential or a
	// custody value; "" holds the credentials shared by all), the new
	// key's own holder winning ties, then the holder used least recently
	// (internal/fairlru): a workload with many scopes evicts its own
	// entries before anyone else's, never another workload's while it
	// holds more than that one. Evictions are reported to an
	// EventObserver as event "evict", results EvictOwnEntries and
	// EvictLargestHolder.
	MaxEntries int
	// Now returns the current time; tests pass a fake clock. Default
	// time.Now. (Fetch durations given to the Observer use the real
	// clock.)
	Now func() time.Time
	// Observer, if set, is told about every Get and every fetch (the
	// gateway turns these into Prometheus metrics).
	Observer CacheObserver
	// Shared, if set, is a second level shared with other replicas
	// (Redis): a miss here asks it before calling the provider, Forget
	// and InvalidateCredential reach it, and what other replicas
	// invalidate there is dropped here.
	Shared SharedCache
	// SharedTimeout bounds Forget's and InvalidateCredential's calls to
	// Shared (default 2s).
	SharedTimeout time.Duration
	// Log, if set, receives a warning when a background refresh fails
	// while a still-valid credential stays in use — when it happens, not
	// once the credential has expired. It is at most one line per key per
	// ErrorBackoff, since the refresh is retried only after it. Errors
	// name the credential and operation, never a value.
	Log *slog.Logger
	// Redact, if set, gives the text of a failed background refresh's
	// error for Log. A provider's error may quote what it should not (its
	// previous credential, which it sees through Previous, or an
	// endpoint's answer echoing another secret), and no caller's request
	// redacts a refresh's error: the gateway redacts every credential it
	// holds. held is the still-valid credential the refresh would have
	// replaced. Without Redact the error is logged as the provider wrote
	// it.
	Redact func(err error, held *Credential) string
}

// CacheKey identifies one cached credential.
type CacheKey struct {
	// Credential is the credential's name in the policy.
	Credential string
	// Version changes when the credential's definition changes (a hash of
	// the provider name and settings), so a policy reload that changes a
	// credential never serves the old value.
	Version string
	// Scope is the provider's Scoped.CacheScope for the caller, or "".
	Scope string
	// Provider is the provider's registered name. It is part of the key
	// and is what the Observer reports per provider.
	Provider string
}

// CacheResult is what a Get found, as reported to a CacheObserver.
type CacheResult string

// Cache results.
const (
	// CacheHit: a valid cached credential was returned.
	CacheHit CacheResult = "hit"
	// CacheMiss: the caller waited for a provider fetch (its own or one
	// already in flight).
	CacheMiss CacheResult = "miss"
	// CacheError: a cached fetch error was returned without calling the
	// provider (within ErrorBackoff).
	CacheError CacheResult = "error"
)

// CacheObserver receives cache events. Implementations must be safe for
// concurrent use and fast (they are called on the request path); they
// receive no secret values.
type CacheObserver interface {
	// CacheLookup is called once per Get.
	CacheLookup(key CacheKey, result CacheResult)
	// ProviderFetch is called after every provider call, including
	// background refreshes, with its duration and error (nil on success).
	ProviderFetch(key CacheKey, d time.Duration, err error)
}

// Cache sits in front of providers. Per key it runs at most one fetch at
// a time (N concurrent first requests make one provider call), keeps the
// result until its Expiry (or DefaultTTL), refreshes it in the background
// shortly before expiry, never returns an expired credential, and
// remembers failures for at most ErrorBackoff. It is safe for concurrent
// use. Close stops background fetches.
type Cache struct {
	opts CacheOptions

	// closing is cancelled by Close; every fetch context is tied to it.
	closing   context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// entries count against their holders' shares of MaxEntries.
	entries *fairlru.Cache[CacheKey, *entry, string]
	// abandoned counts, per provider, its fetches that were abandoned
	// and have not returned yet (callProvider).
	abandoned map[providerID]int
}

// providerID names one provider: a credential's definition (a reload
// that changes it builds another provider).
type providerID struct{ credential, version, provider string }

// entry is one key's state. Fields are guarded by Cache.mu.
type entry struct {
	key  CacheKey
	cred *Credential // nil until a fetch succeeds
	// shared is the credential Shared returned for cred: the one it
	// holds and drops (Forget). It differs from cred when capExpiry
	// moved cred's expiry (a copy), and is nil without Shared.
	shared *Credential
	// dropShared is a revoked credential of Shared that the next fetch
	// drops from it before asking it (Get found cred revoked): else the
	// fetch would read it back, since Revoked is not stored there.
	dropShared *Credential
	expires    time.Time // cred is valid before this
	refreshAt  time.Time // a Get at or after this starts a refresh
	err        error     // the last fetch error, if it failed
	errUntil   time.Time // err is returned before this
	call       *call     // the fetch in flight, if any
	// unwatch stops watching cred.Revoked (nil when not watched), so
	// refreshes do not pile up watchers on a long-lived Revoked.
	unwatch func() bool
}

// call is one provider fetch that several Gets may wait for.
type call struct {
	done chan struct{}
	cred *Credential
	err  error
}

// fetched is what one fetch got: cred, as the cache hands it out, and
// shared, the credential Shared returned for it (entry.shared).
type fetched struct{ cred, shared *Credential }

// NewCache returns a Cache with opts, zero fields defaulted.
func NewCache(opts CacheOptions) *Cache {
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultCacheMaxTTL
	}
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = DefaultCacheTTL
	}
	opts.DefaultTTL = min(opts.DefaultTTL, opts.MaxTTL)
	if opts.RefreshAhead == 0 {
		opts.RefreshAhead = DefaultCacheRefreshAhead
	}
	if opts.ErrorBackoff == 0 {
		opts.ErrorBackoff = DefaultCacheErrorBackoff
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultCacheFetchTimeout
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultCacheMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SharedTimeout <= 0 {
		opts.SharedTimeout = 2 * time.Second
	}
	c := &Cache{opts: opts, entries: fairlru.New[CacheKey, *entry, string](opts.MaxEntries), abandoned: map[providerID]int{}}
	c.closing, c.cancel = context.WithCancel(context.Background())
	if opts.Shared != nil {
		opts.Shared.Watch(c.remoteInvalidation)
	}
	return c
}

// remoteInvalidation drops what another replica invalidated, here only.
func (c *Cache) remoteInvalidation(inv Invalidation) {
	if inv.Credential != "" {
		c.invalidateCredentialLocal(inv.Credential, inv.Version)
		return
	}
	c.Invalidate(inv.Key)
}

// Get returns the credential for key, calling fetch when there is no
// valid cached one. hit reports whether the value came from the cache
// without waiting for a fetch.
//
// The fetch runs on a context detached from ctx (it keeps ctx's values,
// not its cancellation) and bounded by FetchTimeout, so one caller giving
// up does not fail the others waiting for the same key; each caller waits
// only as long as its own ctx allows. A fetch that times out returns an
// error wrapping ErrUnavailable.
//
// After Close, Get calls fetch directly on ctx and caches nothing.
//
// A key Get creates is held by no workload (the credentials shared by
// all); GetBound creates it for its Binding's Holder (MaxEntries).
func (c *Cache) Get(ctx context.Context, key CacheKey, fetch func(context.Context) (*Credential, error)) (cred *Credential, hit bool, err error) {
	return c.get(ctx, key, "", fetch)
}

func (c *Cache) get(ctx context.Context, key CacheKey, holder string, fetch func(context.Context) (*Credential, error)) (cred *Credential, hit bool, err error) {
	now := c.opts.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		fctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
		defer cancel()
		f, err := c.fetch(fctx, key, fetch, now)
		return f.cred, false, err
	}
	var evicted *eviction
	e, ok := c.entries.Get(key)
	if ok {
		if e.cred.revoked() {
			// The provider said it is no longer valid: fetch anew, and
			// drop it from Shared first (Forget, which the revocation
			// also calls, does nothing once it is gone from here).
			if e.shared != nil {
				e.dropShared = e.shared
			}
			e.cred, e.shared = nil, nil
		}
		if e.cred != nil && now.Before(e.expires) {
			if !now.Before(e.refreshAt) && e.call == nil {
				c.start(ctx, e, fetch)
			}
			cred := e.cred
			c.mu.Unlock()
			c.observe(key, CacheHit)
			return cred, true, nil
		}
		if e.err != nil && now.Before(e.errUntil) {
			err := &BackoffError{Credential: key.Credential, Until: e.errUntil, Err: e.err}
			c.mu.Unlock()
			c.observe(key, CacheError)
			return nil, false, err
		}
	} else {
		// A full cache evicts first (MaxEntries): never the new key.
		// The entry counts against the holder of the Get that made it.
		e = &entry{key: key}
		if ev, ok := c.entries.Add(key, holder, e); ok {
			evicted = &eviction{key: ev.Key, cause: EvictLargestHolder}
			if ev.Owner == holder {
				evicted.cause = EvictOwnEntries
			}
		}
	}
	if e.call == nil {
		c.start(ctx, e, fetch)
	}
	cl := e.call
	c.mu.Unlock()
	if evicted != nil {
		c.evictEvent(*evicted)
	}
	c.observe(key, CacheMiss)

	select {
	case <-cl.done:
		return cl.cred, false, cl.err
	case <-ctx.Done():
		return nil, false, fmt.Errorf("credential %q: waiting for fetch: %w", key.Credential, context.Cause(ctx))
	}
}

// start begins a fetch for e in the background. c.mu is held.
func (c *Cache) start(ctx context.Context, e *entry, fetch func(context.Context) (*Credential, error)) {
	cl := &call{done: make(chan struct{})}
	e.call = cl
	drop := e.dropShared
	e.dropShared = nil
	c.wg.Add(1)
	// The credential being replaced, for providers that rotate a part
	// of it (Previous).
	go c.run(WithPrevious(context.WithoutCancel(ctx), e.cred), e, cl, drop, fetch)
}

// run performs one fetch and publishes its result to e (if e is still
// cached) and to everyone waiting on cl. drop, when set, is a revoked
// credential of Shared that it drops from there first.
func (c *Cache) run(base context.Context, e *entry, cl *call, drop *Credential, fetch func(context.Context) (*Credential, error)) {
	defer c.wg.Done()
	if drop != nil {
		c.forgetShared(e.key, drop)
	}
	fctx, cancel := context.WithTimeout(base, c.opts.FetchTimeout)
	defer cancel()
	stop := context.AfterFunc(c.closing, cancel)
	defer stop()

	f, err := c.fetch(fctx, e.key, fetch, c.opts.Now())
	cred := f.cred
	if err != nil && c.closing.Err() != nil {
		err = fmt.Errorf("credential %q: %w: %w", e.key.Credential, ErrCacheClosed, err)
	}
	var refreshFailed bool
	var expires time.Time
	var held *Credential
	c.mu.Lock()
	// The clock is read under the lock: a Get that joins this call
	// before the lock is taken here gets an error whose backoff counts
	// from a time after it joined (read before the lock, the clock could
	// have moved on meanwhile, and the joiner be told to retry at a time
	// already past: Retry-After 0).
	now := c.opts.Now()
	if cur, ok := c.entries.Peek(e.key); ok && cur == e {
		if err == nil {
			e.cred, e.shared, e.err = cred, f.shared, nil
			e.expires = cred.Expiry
			if e.expires.IsZero() {
				e.expires = now.Add(c.opts.DefaultTTL)
			}
			ahead := max(c.opts.RefreshAhead, 0)
			ahead = min(ahead, e.expires.Sub(now)/3)
			e.refreshAt = e.expires.Add(-ahead)
			if e.unwatch != nil {
				e.unwatch()
				e.unwatch = nil
			}
			if cred.Revoked != nil {
				// Dropped at once when the provider revokes it, not at the
				// next Get only (and, with Shared, on the other replicas
				// too). Forget is a no-op once the entry holds another
				// credential, so a watcher left behind by an entry that
				// was removed is harmless.
				key := e.key
				e.unwatch = context.AfterFunc(cred.Revoked, func() { c.Forget(key, cred) })
			}
		} else if c.opts.ErrorBackoff > 0 {
			e.err = err
			e.errUntil = now.Add(c.opts.ErrorBackoff)
			// A failed refresh leaves a still-valid credential in place;
			// try again after the backoff, not on every Get.
			if e.cred != nil && e.refreshAt.Before(e.errUntil) {
				e.refreshAt = e.errUntil
			}
			refreshFailed = e.cred != nil && now.Before(e.expires)
			expires, held = e.expires, e.cred
			err = &BackoffError{Credential: e.key.Credential, Until: e.errUntil, Err: err}
		}
		e.call = nil
	}
	c.mu.Unlock()
	if refreshFailed && c.opts.Log != nil {
		errAttr := slog.Any("error", errors.Unwrap(err))
		if c.opts.Redact != nil {
			errAttr = slog.String("error", c.opts.Redact(errors.Unwrap(err), held))
		}
		c.opts.Log.Warn("credential refresh failed; the cached credential stays in use until it expires",
			slog.String("credential", e.key.Credential), slog.String("provider", e.key.Provider),
			slog.Duration("expires_in", expires.Sub(now).Round(time.Second)),
			slog.Duration("retry_in", c.opts.ErrorBackoff), errAttr)
	}

	cl.cred, cl.err = cred, err
	close(cl.done)
}

// fetch calls the provider's fetch function (through the shared cache
// when there is one), turning a nil credential, an unusable one
// (CheckUsable: an expired one too), a timeout or a panic into an error,
// and reports provider calls to the Observer. The credential it returns
// may be a copy (capExpiry) of the one Shared holds, which it returns
// too (fetched.shared), for Forget.
func (c *Cache) fetch(ctx context.Context, key CacheKey, fetch func(context.Context) (*Credential, error), now time.Time) (fetched, error) {
	var cred *Credential
	var err error
	call := func(ctx context.Context) (cred *Credential, err error) {
		start := time.Now()
		defer func() {
			if c.opts.Observer != nil {
				c.opts.Observer.ProviderFetch(key, time.Since(start), err)
			}
		}()
		cred, err = c.callProvider(ctx, key, fetch)
		if err == nil && cred != nil {
			// Checked before Shared stores it: an unusable credential
			// is never kept, here or on another replica.
			err = CheckUsable(cred, key.Credential, key.Provider, c.opts.Now())
		}
		if err != nil {
			return nil, err
		}
		// Capped before Shared stores it, so that the shared entry
		// expires with the cap too.
		return c.capExpiry(cred, c.opts.Now()), nil
	}
	if c.opts.Shared != nil {
		ahead := max(c.opts.RefreshAhead, 0)
		cred, err = c.opts.Shared.Fetch(ctx, key, ahead, call)
	} else {
		cred, err = call(ctx)
	}
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrUnavailable):
		return fetched{}, fmt.Errorf("credential %q: fetch timed out after %s: %w: %w", key.Credential, c.opts.FetchTimeout, ErrUnavailable, err)
	case err != nil:
		return fetched{}, err
	case cred == nil:
		return fetched{}, fmt.Errorf("credential %q: provider %s returned no credential", key.Credential, key.Provider)
	case cred.revoked():
		return fetched{}, fmt.Errorf("credential %q: provider %s returned a credential that it has revoked: %w", key.Credential, key.Provider, ErrUnavailable)
	}
	if err := CheckUsable(cred, key.Credential, key.Provider, now); err != nil {
		// Checked again for what Shared held (stored by a replica that
		// did not check, or one that has expired since): dropped there
		// too, so that the next fetch asks the provider.
		if c.opts.Shared != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.SharedTimeout)
			c.opts.Shared.Forget(sctx, key, cred)
			cancel()
		}
		return fetched{}, err
	}
	f := fetched{shared: cred}
	if c.opts.Shared == nil {
		f.shared = nil
	}
	// Shared may hold an entry stored under a longer cap (another
	// replica's configuration, or before an upgrade).
	f.cred = c.capExpiry(cred, now)
	return f, nil
}

// AbandonAfter is how long after its context ends (FetchTimeout, or the
// cache closing) a provider's fetch may still take to return before the
// cache stops waiting for it.
const AbandonAfter = time.Second

// MaxAbandoned is how many abandoned fetches (callProvider) of one
// provider may be outstanding: while that many have not returned, a new
// fetch of its credential fails at once instead of starting another
// goroutine the provider may never end. Fetches already in flight when
// the first one was abandoned may be abandoned too, so the goroutines a
// hung provider holds are bounded by MaxAbandoned plus the keys that were
// in flight then, however many attempts follow.
const MaxAbandoned = 1

// Provider events of the cache (EventObserver, when the Observer is one):
// event "fetch", results "abandoned" (a fetch was abandoned) and
// "held_back" (a fetch was not started: MaxAbandoned abandoned ones are
// outstanding).
const (
	eventFetch           = "fetch"
	eventResultAbandoned = "abandoned"
	eventResultHeldBack  = "held_back"
)

// callProvider calls fetch in a goroutine of its own and waits for it at
// most until AbandonAfter after ctx ends (module.Call): a provider that
// ignores its context (a blocking call without it, a library that takes
// none) fails this fetch with an error wrapping ErrUnavailable instead of
// holding the key's single flight forever, which would leave every later
// request for the credential waiting on it until its client gave up and
// Close waiting too. The abandoned goroutine is the provider's; it ends
// when the provider's call does, and until it has, at most MaxAbandoned
// of them are outstanding per provider: further fetches fail at once. A
// panic in fetch is an error that does not print its value.
func (c *Cache) callProvider(ctx context.Context, key CacheKey, fetch func(context.Context) (*Credential, error)) (*Credential, error) {
	id := providerID{key.Credential, key.Version, key.Provider}
	c.mu.Lock()
	outstanding := c.abandoned[id]
	c.mu.Unlock()
	if outstanding >= MaxAbandoned {
		c.event(key, eventResultHeldBack)
		return nil, fmt.Errorf("credential %q: provider %s has not yet returned from a fetch abandoned earlier (it does not honour its context); no new fetch starts until it does: %w",
			key.Credential, key.Provider, ErrUnavailable)
	}
	// counted and returned settle, under c.mu, whether this call is
	// counted in abandoned: it may return just after it was abandoned,
	// before it is counted.
	var counted, returned bool
	late := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		returned = true
		if counted {
			if c.abandoned[id]--; c.abandoned[id] <= 0 {
				delete(c.abandoned, id)
			}
		}
	}
	cred, err := module.Call(ctx, AbandonAfter, fmt.Sprintf("credential %q: provider %s Fetch", key.Credential, key.Provider), fetch, late)
	if !errors.Is(err, module.ErrAbandoned) {
		return cred, err
	}
	c.mu.Lock()
	if !returned {
		c.abandoned[id]++
		counted = true
	}
	c.mu.Unlock()
	c.event(key, eventResultAbandoned)
	if c.opts.Log != nil {
		c.opts.Log.Error("credential fetch abandoned: the provider did not return after its context ended; it must honour ctx",
			slog.String("credential", key.Credential), slog.String("provider", key.Provider), slog.Duration("waited_after_context", AbandonAfter))
	}
	return nil, fmt.Errorf("credential %q: provider %s did not return within %s after its context ended (%v); the provider does not honour its context: %w",
		key.Credential, key.Provider, AbandonAfter, context.Cause(ctx), ErrUnavailable)
}

// event reports a provider event of the cache to the Observer when it
// is an EventObserver.
func (c *Cache) event(key CacheKey, result string) {
	if eo, ok := c.opts.Observer.(EventObserver); ok {
		eo.ProviderEvent(key.Provider, eventFetch, result)
	}
}

// capExpiry returns cred with the Expiry the cache keeps it until: cred
// itself when its own Expiry is at most now+MaxTTL, otherwise a copy
// whose Expiry is now+MaxTTL, or, when it has none, a copy whose Expiry
// is now+DefaultTTL (at most MaxTTL). A copy shares Fields, Hosts and
// Revoked. The shared tier stores that Expiry, so a credential without
// one expires there, and on every replica that reads it, DefaultTTL
// after it was fetched: the shared tier's own default (rediscache's
// DefaultTTL) never decides how long such a credential lives, and a
// replica reading it late keeps it only for what is left, not for
// another DefaultTTL.
func (c *Cache) capExpiry(cred *Credential, now time.Time) *Credential {
	if cred == nil {
		return cred
	}
	limit := now.Add(c.opts.MaxTTL)
	if cred.Expiry.IsZero() {
		limit = now.Add(c.opts.DefaultTTL)
	} else if !cred.Expiry.After(limit) {
		return cred
	}
	capped := *cred
	capped.Expiry = limit
	return &capped
}

// Causes of an eviction, the results of the cache's "evict" events
// (EventObserver): the cache was full (MaxEntries) when a new key came.
const (
	// EvictOwnEntries: the new key's holder held the most entries, and
	// its least recently used one went.
	EvictOwnEntries = "own_entries"
	// EvictLargestHolder: another holder held more entries than the new
	// key's, and its least recently used one went.
	EvictLargestHolder = "largest_holder"
)

const eventEvict = "evict"

// eviction is one entry a new key evicted, reported after c.mu is
// released.
type eviction struct {
	key   CacheKey
	cause string
}

// evictEvent reports an eviction to the Observer when it is an
// EventObserver.
func (c *Cache) evictEvent(ev eviction) {
	if eo, ok := c.opts.Observer.(EventObserver); ok {
		eo.ProviderEvent(ev.key.Provider, eventEvict, ev.cause)
	}
}

// Invalidate forgets key, so the next Get fetches again. A fetch already
// in flight finishes for its waiters but its result is not kept.
func (c *Cache) Invalidate(key CacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.Remove(key)
}

// InvalidateCredential forgets every cached key of one credential
// definition (all scopes), for example when the provider that fetched them
// is released and has revoked what it handed out.
//
// With a SharedCache, the shared entries go too and every other replica is
// told to drop its own.
func (c *Cache) InvalidateCredential(credential, version string) {
	c.invalidateCredentialLocal(credential, version)
	if c.opts.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.SharedTimeout)
		defer cancel()
		c.opts.Shared.InvalidateCredential(ctx, credential, version)
	}
}

func (c *Cache) invalidateCredentialLocal(credential, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.DeleteFunc(func(k CacheKey, _ *entry) bool {
		return k.Credential == credential && k.Version == version
	})
}

// Forget drops key's cached credential if it is still cred: the caller
// learned that cred was rejected (an upstream answered 401). A credential
// fetched since, by a caller that saw the same rejection, is kept, so N
// requests rejected together cause one new fetch, not N. It reports
// whether an entry was dropped.
//
// With a SharedCache, a dropped credential is also removed from the shared
// store (if it still holds it) before Forget returns, so the next Get
// fetches a new one, and the other replicas are told to drop it.
func (c *Cache) Forget(key CacheKey, cred *Credential) bool {
	c.mu.Lock()
	e, ok := c.entries.Peek(key)
	if !ok || cred == nil || e.cred != cred {
		c.mu.Unlock()
		return false
	}
	shared := e.shared
	c.entries.Remove(key)
	c.mu.Unlock()
	c.forgetShared(key, shared)
	return true
}

// forgetShared removes key's shared entry if it still holds cred (the
// credential Shared returned: entry.shared), and tells the other
// replicas to drop theirs (Forget, Reject, a revocation): no-op without
// a SharedCache or a credential.
func (c *Cache) forgetShared(key CacheKey, cred *Credential) {
	if c.opts.Shared == nil || cred == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.SharedTimeout)
	defer cancel()
	c.opts.Shared.Forget(ctx, key, cred)
}

// Reject drops key's cached credential if it is still cred because it
// cannot be used (an injector refused one of its values: a line break
// for a header, a user name with ':' for Basic, a certificate that does
// not match its key), and remembers err for ErrorBackoff: Gets within
// it return a BackoffError wrapping err (and ErrUnusable and
// ErrUnavailable) without calling the provider, so a broken source is
// not asked on every request; the first Get after it fetches anew. It
// reports whether an entry was dropped; like Forget, a credential
// fetched since is kept. With a SharedCache, the shared entry is
// removed too and the other replicas are told to drop theirs. err must
// name no value.
func (c *Cache) Reject(key CacheKey, cred *Credential, err error) bool {
	c.mu.Lock()
	e, ok := c.entries.Peek(key)
	if !ok || cred == nil || e.cred != cred {
		c.mu.Unlock()
		return false
	}
	shared := e.shared
	if c.opts.ErrorBackoff > 0 {
		e.cred, e.shared = nil, nil
		if e.unwatch != nil {
			e.unwatch()
			e.unwatch = nil
		}
		e.err = fmt.Errorf("credential %q: provider %s returned a credential that cannot be used: %w: %w: %w", key.Credential, key.Provider, err, ErrUnusable, ErrUnavailable)
		e.errUntil = c.opts.Now().Add(c.opts.ErrorBackoff)
	} else {
		c.entries.Remove(key)
	}
	c.mu.Unlock()
	c.forgetShared(key, shared)
	return true
}

// Len returns the number of cached keys (including failed and in-flight
// ones).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.Len()
}

// Close cancels fetches in flight (their waiters get an error wrapping
// ErrCacheClosed), waits for them to return, and drops every entry. It is
// safe to call more than once. A provider that ignores its context delays
// Close by at most AbandonAfter (callProvider).
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.wg.Wait()
		c.mu.Lock()
		c.entries.Clear()
		c.mu.Unlock()
	})
}

func (c *Cache) observe(key CacheKey, r CacheResult) {
	if c.opts.Observer != nil {
		c.opts.Observer.CacheLookup(key, r)
	}
}
