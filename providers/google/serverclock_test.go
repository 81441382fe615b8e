package google_test

import (
	"testing"
	"time"

	"github.com/credgate/credgate/internal/googletest"
	"github.com/credgate/credgate/providers"
)

// TestExpireTimeOnGatewayClock: Google states an impersonated access
// token's expireTime, and an ID token's exp, on its own clock; Google's
// APIs (and a receiving service with a correct clock) judge them on it.
// Whatever the difference of Google's clock from the gateway's (within
// the minutes the workload's token and the assertions allow), the
// credential's Expiry on the gateway's clock is the lifetime Google
// granted counted from the request, less the provider's minute of
// margin, never later (providers.ServerExpiry). Before the fix the
// instants were taken as they are: the 8 skewed cases failed.
func TestExpireTimeOnGatewayClock(t *testing.T) {
	for _, skew := range []time.Duration{-50 * time.Second, -20 * time.Second, 0, 40 * time.Second, 3 * time.Minute} {
		f := newFixture(t, googletest.Options{Now: func() time.Time { return time.Now().Add(skew) }})
		wi, _ := f.federation(t)
		wlTok := wi.mint(t, "billing-api", "credgate", "https:"+poolAud)
		req := providers.Request{Credential: "gcp", Workload: workload("billing", wlTok)}
		for _, tc := range []struct {
			mode, settings string
			life           time.Duration
		}{
			{"access token", f.wif(", subject_token: {factor: jwt}, service_account: "+email+", lifetime: 30m") + "scopes: [" + cloudScope + "]\n", 30 * time.Minute},
			{"ID token", f.wif(", subject_token: {factor: jwt}, service_account: "+email) + "mode: id_token\ntarget_audience: " + runAud + "\n", time.Hour},
		} {
			t.Run(tc.mode+"/"+skew.String(), func(t *testing.T) {
				p := f.load(t, tc.settings)
				start := time.Now()
				c, err := p.Fetch(t.Context(), req)
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				// The instants and Date are to the second.
				want := tc.life - time.Minute
				if d := c.Expiry.Sub(start); d > want+time.Since(start) || d < want-2*time.Second-time.Since(start) {
					t.Errorf("expiry %v after the request, want %v (at most, a second or two less)", d.Round(time.Millisecond), want)
				}
			})
		}
	}
}
