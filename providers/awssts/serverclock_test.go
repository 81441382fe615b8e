package awssts

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// TestExpirationOnGatewayClock: STS states Expiration on its own clock,
// and AWS judges the keys on it. Whatever the difference of STS's clock
// from the gateway's (a day either way, minutes, none), the credential's
// Expiry on the gateway's clock is the lifetime STS granted (15 minutes
// here) counted from the request, never later: a gateway clock behind
// STS's no longer keeps keys AWS already refuses, one ahead (up to
// providers.MaxDateLag) no longer takes fresh keys for expired. A Date
// further behind is not trusted to stretch the keys' life: Expiration is
// kept as stated (so keys from an STS 20 minutes behind are refused as
// expired, and the log says to check the clocks). Without a readable
// Date header the Expiration is kept as it is. Before the fix Expiration was taken as it
// is: 8 or 9 of the 13 cases failed (all but the half-second skews and
// the Date-less ones; the same clock by the sub-second rounding of
// Expiration, run to run).
func TestExpirationOnGatewayClock(t *testing.T) {
	const life = 15 * time.Minute // the fake's lifetime
	for _, tc := range []struct {
		name string
		skew time.Duration // STS's clock minus the gateway's
		date func(stsNow time.Time) string
		// want is the expiry's distance from the request; wantErr a
		// part of the error instead.
		want    time.Duration
		wantErr string
	}{
		{name: "STS a day behind: not trusted", skew: -26 * time.Hour, wantErr: "already expired"},
		{name: "STS two hours behind: not trusted", skew: -2 * time.Hour, wantErr: "already expired"},
		{name: "STS 20 minutes behind, more than the lifetime: not trusted", skew: -20 * time.Minute, wantErr: "already expired"},
		{name: "STS 10 minutes behind: not trusted", skew: -10 * time.Minute, want: life - 10*time.Minute},
		{name: "STS 4 minutes behind", skew: -4 * time.Minute, want: life},
		{name: "STS a minute behind", skew: -time.Minute, want: life},
		{name: "STS half a second behind", skew: -500 * time.Millisecond, want: life},
		{name: "same clock", skew: 0, want: life},
		{name: "STS half a second ahead", skew: 500 * time.Millisecond, want: life},
		{name: "STS a minute ahead", skew: time.Minute, want: life},
		{name: "STS 20 minutes ahead", skew: 20 * time.Minute, want: life},
		{name: "STS two hours ahead", skew: 2 * time.Hour, want: life},
		{name: "STS a day ahead", skew: 26 * time.Hour, want: life},
		{name: "no Date header: Expiration as it is", skew: time.Minute, date: func(time.Time) string { return "" }, want: life + time.Minute},
		{name: "unreadable Date header: Expiration as it is", skew: time.Minute, date: func(time.Time) string { return "yesterday" }, want: life + time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stsNow := func() time.Time { return time.Now().Add(tc.skew) }
			sts := newFakeSTS(t, stsNow)
			if tc.date != nil {
				sts.date = func() string { return tc.date(stsNow()) }
			}
			p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src}", sts.URL),
				map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
			req := providers.Request{Credential: "aws", Workload: billing()}
			cache := providers.NewCache(providers.CacheOptions{})
			t.Cleanup(cache.Close)
			start := time.Now()
			key := providers.CacheKey{Credential: "aws", Scope: p.CacheScope(req), Provider: "awssts"}
			cred, _, err := cache.Get(context.Background(), key, func(ctx context.Context) (*providers.Credential, error) { return p.Fetch(ctx, req) })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Get: %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			// The fake states Expiration and Date to the second: the
			// expiry is within two seconds below the lifetime, and not
			// above it by more than the time the fetch took.
			// The fake reads its clock for Date and Expiration apart,
			// after start: either may be a second boundary later.
			slack := time.Since(start)
			if d := cred.Expiry.Sub(start); d > tc.want+slack || d < tc.want-2*time.Second-time.Since(start) {
				t.Errorf("expiry %v after the request, want %v (at most, a second or two less)", d.Round(time.Millisecond), tc.want)
			}
		})
	}
}
