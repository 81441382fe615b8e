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
	// Holder is whose share of the cache's MaxEntries the key counts
	// against: the caller's workload (identity.Workload.DisplayName) when
	// the key is the caller's own (a Scope), "" for a credential shared
	// by every caller. A workload with many scopes then evicts its own
	// entries, not other workloads'.
	Holder string
}

// Bind binds p's credential — key's Credential, Version and Provider —
// to the caller wl. p reads no other credential; see BindComposed.
func Bind(p Provider, key CacheKey, wl identity.Workload) Binding {
	return BindComposed(p, nil, key, wl)
}

// Input is a credential that a Composer reads, as the policy wired it:
// its name, its provider and the credentials it reads in turn.
type Input struct {
	Name     string
	Provider Provider
	Inputs   []Input
}

// BindComposed binds p's credential to the caller wl, p reading the
// credentials inputs (Composer): its cache scope is ComposedScope, so a
// credential made from a per-caller input is cached per caller even when
// p itself is not Scoped.
func BindComposed(p Provider, inputs []Input, key CacheKey, wl identity.Workload) Binding {
	req := Request{Credential: key.Credential, Workload: wl}
	key.Scope = ComposedScope(p, inputs, req)
	ri, ok := p.(Reissuer)
	holder := ""
	if key.Scope != "" {
		holder = wl.DisplayName()
	}
	return Binding{
		Holder:  holder,
		Key:     key,
		Fetch:   func(ctx context.Context) (*Credential, error) { return p.Fetch(ctx, req) },
		Reissue: ok && ri.ReissueOnUnauthorized(),
	}
}

// ComposedScope is the cache scope of p's credential for req when p reads
// inputs: p's own CacheScope (Scoped; "" when it is not) and the scope of
// every input, recursively, for the same caller. A Composer fetches its
// inputs for its own caller, so whatever distinguishes callers of an
// input distinguishes callers of the credential made from it: an awssts
// role assumed with keys read from a per-workload Vault path, an OAuth2
// client whose secret is exchanged per workload. When no input depends on
// the caller it is p's own scope, unchanged.
func ComposedScope(p Provider, inputs []Input, req Request) string {
	own := ""
	if sc, ok := p.(Scoped); ok {
		own = sc.CacheScope(req)
	}
	var s *Scope
	for _, in := range inputs {
		ir := req
		ir.Credential = in.Name
		is := ComposedScope(in.Provider, in.Inputs, ir)
		if is == "" {
			continue
		}
		if s == nil {
			s = NewScope("composed").Add("own", own)
		}
		s.Add("input", in.Name).Add("input_scope", is)
	}
	if s == nil {
		return own
	}
	return s.String()
}

// GetBound returns the binding's credential from the cache; see Get.
func (c *Cache) GetBound(ctx context.Context, b Binding) (cred *Credential, hit bool, err error) {
	return c.get(ctx, b.Key, b.Holder, b.Fetch)
}
