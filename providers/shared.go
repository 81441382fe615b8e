package providers

import (
	"context"
	"time"
)

// SharedCache is a second cache level shared by several gateway replicas
// (Redis, package providers/rediscache), behind the in-process Cache. The
// Cache consults it only on a miss of its own, so a hit in the process
// never reaches it. Implementations are safe for concurrent use, never
// fail a fetch because the shared store is unavailable (they call fetch
// directly then), and keep secret values out of what they store in
// plaintext, log and report.
type SharedCache interface {
	// Fetch returns key's credential from the shared store when it holds
	// one that is not within refreshAhead of its expiry; otherwise it
	// calls fetch, at most once at a time for key across every replica
	// sharing the store, and stores the result. refreshAhead is the
	// Cache's RefreshAhead (capped at a third of the credential's
	// lifetime), so a refresh ahead of expiry gets a new credential, not
	// the one about to expire.
	Fetch(ctx context.Context, key CacheKey, refreshAhead time.Duration, fetch func(context.Context) (*Credential, error)) (*Credential, error)
	// Forget removes key's shared entry if it still holds cred (an
	// upstream rejected it) and tells the other replicas to drop it.
	Forget(ctx context.Context, key CacheKey, cred *Credential)
	// InvalidateCredential removes every shared entry of one credential
	// definition and tells the other replicas to drop theirs.
	InvalidateCredential(ctx context.Context, credential, version string)
	// Watch registers the function told about invalidations that other
	// replicas published. The Cache calls it once, from NewCache.
	Watch(func(Invalidation))
}

// Invalidation is an invalidation another replica published.
type Invalidation struct {
	// Key, when Credential is empty, is one key to drop.
	Key CacheKey
	// Credential and Version, when set, name a credential definition all
	// of whose keys are dropped.
	Credential, Version string
}
