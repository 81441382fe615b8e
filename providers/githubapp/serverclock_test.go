package githubapp_test

import (
	"testing"
	"time"

	"github.com/credgate/credgate/internal/githubtest"
	"github.com/credgate/credgate/providers"
)

// TestExpiresAtOnGatewayClock: GitHub states an installation token's
// expires_at on its own clock, and judges the token on it. Whatever the
// difference of GitHub's clock from the gateway's (within the minute
// GitHub allows the app JWT), the credential's Expiry on the gateway's
// clock is the token's hour counted from the request, never later
// (providers.ServerExpiry). Before the fix expires_at was taken as it
// is: the 4 skewed cases failed.
func TestExpiresAtOnGatewayClock(t *testing.T) {
	for _, skew := range []time.Duration{-50 * time.Second, -20 * time.Second, 0, 20 * time.Second, 50 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			f := newFixture(t, githubtest.Options{Now: func() time.Time { return time.Now().Add(skew) }})
			p := f.load(t, base+"app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
			start := time.Now()
			c, err := p.Fetch(t.Context(), providers.Request{Credential: "github"})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			// expires_at and Date are to the second.
			if d := c.Expiry.Sub(start); d > time.Hour+time.Since(start) || d < time.Hour-2*time.Second-time.Since(start) {
				t.Errorf("expiry %v after the request, want 1h (at most, a second or two less)", d.Round(time.Millisecond))
			}
		})
	}
}
