package providers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
			if after != "never-returns" {
				free() // the abandoned call returns (or panics) now: no effect on the cache
			}
			// After the backoff, the provider is asked again.
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
