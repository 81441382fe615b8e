package providers

import "context"

type previousKey struct{}

// WithPrevious returns ctx carrying prev, the credential that the fetch
// run on ctx replaces. The Cache sets it when it refreshes a key it holds
// a credential for (even an expired one), and a SharedCache when the
// shared entry it refreshes is still readable (another replica's newer
// credential wins over this replica's).
func WithPrevious(ctx context.Context, prev *Credential) context.Context {
	if prev == nil {
		return ctx
	}
	return context.WithValue(ctx, previousKey{}, prev)
}

// Previous returns the credential the fetch running on ctx replaces, nil
// for a first fetch. A provider whose next credential is obtained with
// a part of the last one (a single-use, rotating refresh token kept in a
// credential field) reads it here, so that part lives in the cache —
// sealed in Redis when a shared cache is configured — and survives policy
// reloads, rather than in the provider's memory. Other providers ignore
// it. Treat it as read-only.
func Previous(ctx context.Context) *Credential {
	p, _ := ctx.Value(previousKey{}).(*Credential)
	return p
}
