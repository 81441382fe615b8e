package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// checkUnauthorized: the service refuses the provider's own credentials.
func checkUnauthorized(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	cache := providers.NewCache(providers.CacheOptions{RefreshAhead: -1, ErrorBackoff: -1})
	t.Cleanup(cache.Close)
	b := providers.Bind(p, providers.CacheKey{Credential: c.Request.Credential, Version: "v1", Provider: c.Name}, c.Request.Workload)
	first, _, err := cache.GetBound(t.Context(), b)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	secrets := append([]string(nil), c.Secrets...)
	for _, v := range first.Fields {
		if s := v.Reveal(); len(s) >= 8 {
			secrets = append(secrets, s)
		}
	}

	c.Unauthorized(true)
	restored := false
	t.Cleanup(func() {
		if !restored {
			c.Unauthorized(false)
		}
	})
	_, err = p.Fetch(t.Context(), c.Request)
	switch {
	case err == nil:
		t.Fatalf("Fetch succeeded while the service refuses the provider's credentials")
	case errors.Is(err, providers.ErrUnavailable):
		t.Errorf("a refusal of the provider's credentials wraps providers.ErrUnavailable (503, retried): it is a fault to fix, not an outage; error: %v", err)
	}
	printed := fmt.Sprintf("%v %+v %#v", err, err, err)
	for _, s := range secrets {
		if strings.Contains(printed, s) {
			t.Errorf("the refusal's error contains a secret value")
		}
	}
	if strings.TrimSpace(err.Error()) == "" {
		t.Errorf("the refusal's error is empty")
	}

	// An upstream answers 401 to the cached credential: the gateway calls
	// Forget when the binding asks for reissue, and Gets again.
	cred, hit, err := cache.GetBound(t.Context(), b)
	if err != nil || !hit || cred != first {
		t.Fatalf("the warm credential was not served from the cache (hit %v, err %v)", hit, err)
	}
	if b.Reissue {
		if !cache.Forget(b.Key, first) {
			t.Errorf("Forget did not drop the rejected credential")
		}
		if cred, _, err := cache.GetBound(t.Context(), b); err == nil || cred == first {
			t.Errorf("after an upstream's 401 and with the service refusing, Get returned a credential (the rejected one: %v), want an error", cred == first)
		}
	} else if cred, hit, err := cache.GetBound(t.Context(), b); err != nil || !hit || cred != first {
		t.Errorf("a provider that does not ask for reissue lost its cached credential (hit %v, err %v)", hit, err)
	}

	c.Unauthorized(false)
	restored = true
	if _, err := p.Fetch(t.Context(), c.Request); err != nil {
		t.Errorf("once the service serves again, Fetch still fails (a failure was latched): %v", err)
	}
	if b.Reissue {
		if _, _, err := cache.GetBound(t.Context(), b); err != nil {
			t.Errorf("once the service serves again, Get still fails: %v", err)
		}
	}
}

// heldShared is a shared tier that, as the Redis tier does, drops an
// entry only when told to forget the very credential it handed out
// (rediscache compares the one it holds), so that a cache telling it to
// drop another (a copy whose expiry the cache capped) leaves the entry.
type heldShared struct {
	mu   sync.Mutex
	held map[providers.CacheKey]*providers.Credential
}

func (s *heldShared) Fetch(ctx context.Context, key providers.CacheKey, _ time.Duration, fetch func(context.Context) (*providers.Credential, error)) (*providers.Credential, error) {
	s.mu.Lock()
	c := s.held[key]
	s.mu.Unlock()
	if c != nil && time.Now().Before(c.Expiry) {
		return c, nil
	}
	c, err := fetch(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.held[key] = c
	s.mu.Unlock()
	return c, nil
}

func (s *heldShared) Forget(_ context.Context, key providers.CacheKey, cred *providers.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[key] == cred {
		delete(s.held, key)
	}
}

func (s *heldShared) InvalidateCredential(context.Context, string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.held)
}

func (s *heldShared) Watch(func(providers.Invalidation)) {}

// checkForgetReachesShared: an upstream's 401 to a credential of a
// provider whose binding asks for reissue drops it from the shared tier
// too, so that the next Get (the retried request, another replica)
// fetches a new one, also when the cache capped its expiry (a max_ttl
// shorter than the credential's life: the cache hands out a copy).
func checkForgetReachesShared(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	b := providers.Bind(p, providers.CacheKey{Credential: c.Request.Credential, Version: "v1", Provider: c.Name}, c.Request.Workload)
	if !b.Reissue {
		t.Skip("the provider does not ask for reissue after a 401")
	}
	for _, maxTTL := range []time.Duration{time.Minute, providers.DefaultCacheMaxTTL} {
		t.Run(fmt.Sprintf("max_ttl=%v", maxTTL), func(t *testing.T) {
			cache := providers.NewCache(providers.CacheOptions{RefreshAhead: -1, ErrorBackoff: -1, MaxTTL: maxTTL, Shared: &heldShared{held: map[providers.CacheKey]*providers.Credential{}}})
			t.Cleanup(cache.Close)
			first, _, err := cache.GetBound(t.Context(), b)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			issued := c.Issued()
			if !cache.Forget(b.Key, first) {
				t.Fatalf("Forget did not drop the rejected credential")
			}
			if _, _, err := cache.GetBound(t.Context(), b); err != nil {
				t.Fatalf("Get after Forget: %v", err)
			}
			if c.Issued() == issued {
				t.Errorf("after an upstream's 401, Get asked the service for no new credential: the shared tier served the rejected one again")
			}
		})
	}
}
