package google

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// TestAccessTokenExpiryNoOverflow: an expires_in too large for
// time.Duration once multiplied out gives a token that expires in the
// future (at most providers.MaxSeconds), not one that expired before it
// arrived; before, 1e10 s wrapped to an expiry 267 years in the past.
func TestAccessTokenExpiryNoOverflow(t *testing.T) {
	start := time.Now()
	for _, s := range []string{"3600", "2147483648", "10000000000", "4611686018427387904", "9223372036854775807", "99999999999999999999"} {
		c, err := accessTokenCredential("op", "x", start, json.RawMessage(s))
		if err != nil || !c.Expiry.After(start) {
			t.Errorf("expires_in %s: %v, expiry %v before the request", s, err, c.Expiry.Sub(start))
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
	} {
		c, err := accessTokenCredential("op", "x", start, json.RawMessage(strconv.FormatInt(tc.expiresIn, 10)))
		if err != nil {
			t.Errorf("expires_in %d: %v", tc.expiresIn, err)
			continue
		}
		if got := c.Expiry.Sub(start); got != tc.want {
			t.Errorf("expires_in %d: kept %v, want %v", tc.expiresIn, got, tc.want)
		}
	}
}

// TestAccessTokenLifetimeStated: an answer without expires_in gets the
// hour Google documents for its access tokens (less the margin); one
// whose expires_in is 0 or negative is refused, naming the field, and
// never kept for that hour (before, expires_in 0 and -5 were both kept
// 59 minutes).
func TestAccessTokenLifetimeStated(t *testing.T) {
	start := time.Now()
	for _, raw := range []string{"", "null"} {
		c, err := accessTokenCredential("op", "x", start, json.RawMessage(raw))
		if err != nil || c.Expiry.Sub(start) != AccessTokenLifetime-expiryMargin {
			t.Errorf("expires_in %q: %v; want the documented %v less the margin", raw, err, AccessTokenLifetime)
		}
	}
	for _, raw := range []string{"0", "-5", "-3600", `"soon"`, "3600.5"} {
		c, err := accessTokenCredential("op", "x", start, json.RawMessage(raw))
		if err == nil || c != nil || !strings.Contains(err.Error(), "expires_in is ") || !errors.Is(err, providers.ErrBadLifetime) {
			t.Errorf("expires_in %s: %v, %v; want a refusal naming expires_in", raw, c, err)
		}
	}
}
