package providertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

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
