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

// TestAccessTokenShortLifetime: a token granted for less than two
// expiry margins (expires_in 1 s to 119 s) is kept for half its life,
// not refused as expired on arrival (which made every fetch fail as
// "already expired" while Google had issued a valid token); one granted
// longer loses the whole minute. Before the fix 4 of the 7 failed: 1,
// 30 and 60 s were expired on arrival, 119 s kept 59 s.
func TestAccessTokenShortLifetime(t *testing.T) {
	start := time.Now()
	for _, tc := range []struct {
		expiresIn int64
		want      time.Duration
	}{
		{1, 500 * time.Millisecond},
		{30, 15 * time.Second},
		{60, 30 * time.Second},
		{119, 59500 * time.Millisecond},
		{120, time.Minute},
		{3600, 59 * time.Minute},
		{0, 59 * time.Minute}, // no lifetime given: Google's hour
	} {
		if got := accessTokenCredential("x", start, tc.expiresIn).Expiry.Sub(start); got != tc.want {
			t.Errorf("expires_in %d: kept %v, want %v", tc.expiresIn, got, tc.want)
		}
	}
}
