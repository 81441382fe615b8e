package providers

import (
	"context"

	"github.com/credgate/credgate/identity"
)

// Binding is one credential bound to one caller: the cache key it lives
// under and the fetch that fills it. The gateway gets a credential by
// handing a Binding to the Cache; it never probes a provider's optional
// interfaces itself (as x/oauth2's callers hold a TokenSource).
type Binding struct {
	// Key is the cache key: the credential, its version, the provider and
	// the caller's scope (Scoped.CacheScope, "" for one credential for
	// everyone).
	Key CacheKey
	// Fetch asks the provider for the credential for this caller.
	Fetch func(context.Context) (*Credential, error)
	// Reissue reports that a 401 from the upstream to a request carrying
	// this credential should drop it from the cache (Reissuer).
	Reissue bool
}

// Bind binds p's credential — key's Credential, Version and Provider —
// to the caller wl.
func Bind(p Provider, key CacheKey, wl identity.Workload) Binding {
	req := Request{Credential: key.Credential, Workload: wl}
	if sc, ok := p.(Scoped); ok {
		key.Scope = sc.CacheScope(req)
	}
	ri, ok := p.(Reissuer)
	return Binding{
		Key:     key,
		Fetch:   func(ctx context.Context) (*Credential, error) { return p.Fetch(ctx, req) },
		Reissue: ok && ri.ReissueOnUnauthorized(),
	}
}

// GetBound returns the binding's credential from the cache; see Get.
func (c *Cache) GetBound(ctx context.Context, b Binding) (cred *Credential, hit bool, err error) {
	return c.Get(ctx, b.Key, b.Fetch)
}
