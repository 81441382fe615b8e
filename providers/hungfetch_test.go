package providers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// TestFetchIgnoringContextIsBounded checks the class "a provider that
// ignores its context cannot hold a credential's single flight": a Fetch
// that blocks without looking at ctx (forever, or returning a credential
// or panicking once the cache stopped waiting) fails every waiting Get
// within FetchTimeout + AbandonAfter with an error wrapping
// ErrUnavailable; another credential is served meanwhile; after the error
// backoff the provider is called again (the key is not wedged); and Close
// returns. Before, the first fetch held the key's single flight for as
// long as the provider blocked: every Get for the credential waited until
// its own context ended (for the gateway, until the client gave up), no
// fetch was ever started again, and Close waited for the provider (3 of
// 3 cases failed).
func TestFetchIgnoringContextIsBounded(t *testing.T) {
	const fetchTimeout = 100 * time.Millisecond
	bound := fetchTimeout + AbandonAfter + 2*time.Second // slack for a loaded machine
	for _, after := range []string{"never-returns", "returns-late", "panics-late"} {
		t.Run(after, func(t *testing.T) {
			release := make(chan struct{})
			var releaseOnce sync.Once
			free := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(free)
			var calls atomic.Int32
			hung := func(context.Context) (*Credential, error) {
				calls.Add(1)
				<-release // ignores ctx
				switch after {
				case "returns-late":
					return &Credential{Fields: map[string]Secret{FieldToken: NewSecret("late")}}, nil
				case "panics-late":
					panic("late token")
				}
				return nil, errors.New("released")
			}
			c := NewCache(CacheOptions{FetchTimeout: fetchTimeout, ErrorBackoff: 50 * time.Millisecond})
			closed := make(chan struct{})
			defer func() {
				free()
				go func() { c.Close(); close(closed) }()
				select {
				case <-closed:
				case <-time.After(bound):
					t.Errorf("Close did not return within %s", bound)
				}
			}()

			start := time.Now()
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(t.Context(), bound)
					defer cancel()
					_, _, errs[i] = c.Get(ctx, testKey, hung)
				})
			}
			// Another credential is not held up by the hung one.
			other := CacheKey{Credential: "other", Version: "v1", Provider: "fake"}
			if _, _, err := c.Get(t.Context(), other, func(context.Context) (*Credential, error) {
				return &Credential{Fields: map[string]Secret{FieldToken: NewSecret("ok")}}, nil
			}); err != nil {
				t.Errorf("another credential: %v", err)
			}
			wg.Wait()
			if took := time.Since(start); took > fetchTimeout+AbandonAfter+time.Second {
				t.Errorf("the waiting Gets returned after %s, want within %s", took, fetchTimeout+AbandonAfter)
			}
			for i, err := range errs {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Get %d: %v, want an error wrapping ErrUnavailable", i, err)
				}
			}
			if after == "never-returns" {
				// While the abandoned call has not returned, the provider
				// is not asked again (MaxAbandoned): a Get after the
				// backoff fails at once.
				poll.True(t, bound, "a Get after the backoff to be held back", func() bool {
					_, _, err := c.Get(t.Context(), testKey, hung)
					return err != nil && strings.Contains(err.Error(), "abandoned earlier")
				})
				if n := calls.Load(); n != 1 {
					t.Errorf("the provider was called %d times while its abandoned call was outstanding, want 1", n)
				}
			}
			free() // the abandoned call returns (or panics) now: no effect on the cache
			// After the backoff (and the abandoned call's return), the
			// provider is asked again.
			deadline := time.Now().Add(bound)
			for calls.Load() < 2 && time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
				_, _, _ = c.Get(ctx, testKey, hung)
				cancel()
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("the provider was called %d times, want 2: the key is wedged", n)
			}
		})
	}
}

// eventCounter is a CacheObserver and EventObserver that counts provider
// events by "event/result".
type eventCounter struct {
	mu     sync.Mutex
	events map[string]int
}

func (e *eventCounter) CacheLookup(CacheKey, CacheResult)            {}
func (e *eventCounter) ProviderFetch(CacheKey, time.Duration, error) {}
func (e *eventCounter) ProviderEvent(provider, event, result string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events[provider+"/"+event+"/"+result]++
}

func (e *eventCounter) count(k string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.events[k]
}

// TestAbandonedFetchesBounded checks the class "a provider whose Fetch
// never returns holds a bounded number of goroutines, however many
// attempts follow": attempt after attempt (one key; the keys of several
// scopes of one credential), once a fetch was abandoned no other starts
// for the credential until it returns (MaxAbandoned): the attempts fail
// at once with an error wrapping ErrUnavailable that says so, counted as
// the provider event fetch/held_back, and the goroutine count stays
// bounded; another credential is fetched meanwhile; once the hung call
// returns, the provider is asked again. Before, every attempt after the
// error backoff started another call that was abandoned in turn, one
// leaked goroutine each (2 of 2 cases failed).
func TestAbandonedFetchesBounded(t *testing.T) {
	const attempts = 5
	for _, tc := range []struct {
		name   string
		scopes int
	}{{"one key", 1}, {"several scopes", attempts}} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var releaseOnce sync.Once
			free := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(free)
			var calls atomic.Int32
			hung := func(context.Context) (*Credential, error) {
				calls.Add(1)
				<-release // ignores ctx
				return &Credential{Fields: map[string]Secret{FieldToken: NewSecret("t")}}, nil
			}
			ev := &eventCounter{events: map[string]int{}}
			c := NewCache(CacheOptions{FetchTimeout: 20 * time.Millisecond, ErrorBackoff: time.Millisecond, Observer: ev})
			t.Cleanup(c.Close)
			before := runtime.NumGoroutine()
			var last error
			var until time.Time
			for i := range attempts {
				key := testKey
				key.Scope = fmt.Sprint(i % tc.scopes)
				// Each attempt after the backoff of the one before.
				poll.True(t, 5*time.Second, "the error backoff to pass", func() bool { return time.Now().After(until) })
				_, _, last = c.Get(t.Context(), key, hung)
				if !errors.Is(last, ErrUnavailable) {
					t.Fatalf("attempt %d: %v, want an error wrapping ErrUnavailable", i, last)
				}
				var be *BackoffError
				if errors.As(last, &be) {
					until = be.Until
				}
			}
			if n := calls.Load(); n > MaxAbandoned {
				t.Errorf("the provider was called %d times over %d attempts while its first call hung, want %d", n, attempts, MaxAbandoned)
			}
			if got := runtime.NumGoroutine() - before; got > MaxAbandoned+1 {
				t.Errorf("%d more goroutines after %d attempts, want at most %d", got, attempts, MaxAbandoned+1)
			}
			if !strings.Contains(last.Error(), "abandoned earlier") {
				t.Errorf("a held-back attempt's error = %v, want it to say an abandoned fetch has not returned", last)
			}
			if ev.count("fake/fetch/abandoned") != 1 || ev.count("fake/fetch/held_back") < 1 {
				t.Errorf("events %v, want fetch/abandoned once and fetch/held_back", ev.events)
			}
			// Another credential is fetched meanwhile.
			other := CacheKey{Credential: "other", Version: "v1", Provider: "fake"}
			if _, _, err := c.Get(t.Context(), other, func(context.Context) (*Credential, error) {
				return &Credential{Fields: map[string]Secret{FieldToken: NewSecret("ok")}}, nil
			}); err != nil {
				t.Errorf("another credential: %v", err)
			}
			free()
			poll.True(t, 5*time.Second, "the provider to be asked again once its hung call returned", func() bool {
				_, _, err := c.Get(t.Context(), testKey, hung)
				return err == nil
			})
		})
	}
}
