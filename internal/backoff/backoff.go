// Package backoff is the one jittered exponential backoff credgate's
// clients use between retries of a credential source (Vault, an OAuth2
// token endpoint). It exists so that each client does not carry its own
// copy of the arithmetic and the timer.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before retry n (1-based): base·2^(n-1), at most
// limit, with random jitter between half of it and all of it, so that
// replicas retrying together spread out.
func Delay(base, limit time.Duration, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	if n > 1 {
		d = base << (n - 1)
	}
	if n > 62 || d > limit || d <= 0 {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps for Delay(base, limit, n), or returns ctx's cause when ctx is
// done first.
func Wait(ctx context.Context, base, limit time.Duration, n int) error {
	t := time.NewTimer(Delay(base, limit, n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
