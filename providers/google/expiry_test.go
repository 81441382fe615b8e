package google

import (
	"math"
	"testing"
	"time"
)

// TestAccessTokenExpiryNoOverflow: an expires_in too large for
// time.Duration once multiplied out gives a token that expires in the
// future (at most providers.MaxSeconds), not one that expired before it
// arrived; before, 1e10 s wrapped to an expiry 267 years in the past.
func TestAccessTokenExpiryNoOverflow(t *testing.T) {
	start := time.Now()
	for _, s := range []int64{3600, 1 << 31, 10_000_000_000, 1 << 62, math.MaxInt64} {
		if c := accessTokenCredential("x", start, s); !c.Expiry.After(start) {
			t.Errorf("expires_in %d: expiry %v before the request", s, c.Expiry.Sub(start))
		}
	}
}
