package vault

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPKINotAfterOnGatewayClock: Vault states a certificate's NotAfter on
// its own clock. Whatever the difference of Vault's clock from the
// gateway's, up to providers.MaxDateLag behind and any amount ahead, the
// credential's Expiry on the gateway's clock is the certificate's
// lifetime counted from the request, never later (providers.ServerExpiry,
// as for STS, GitHub and Google); a Vault clock further behind is not
// trusted to stretch the certificate's life: NotAfter is kept as stated,
// and the log says so. Before, NotAfter was taken as it is: the 4 cases
// with Vault's clock ahead or a little behind failed.
func TestPKINotAfterOnGatewayClock(t *testing.T) {
	const life = time.Hour
	for _, tc := range []struct {
		skew time.Duration // Vault's clock minus the gateway's
		// want is the expiry's distance from the request.
		want    time.Duration
		logLine bool
	}{
		{skew: -2 * time.Hour, want: life - 2*time.Hour, logLine: true},
		{skew: -20 * time.Minute, want: life - 20*time.Minute, logLine: true},
		{skew: -4 * time.Minute, want: life},
		{skew: -40 * time.Second, want: life},
		{skew: 0, want: life},
		{skew: 3 * time.Minute, want: life},
		{skew: 2 * time.Hour, want: life},
	} {
		t.Run(fmt.Sprint(tc.skew), func(t *testing.T) {
			e := newEnv(t, envOpts{skew: tc.skew})
			mount := pkiEnv(t, e)
			p := e.load(t, "vault-pki", e.serverYAML(tokenAuth)+fmt.Sprintf("mount: %s\nrole: partner-client\ncommon_name: c.example.com\nttl: 1h\n", mount))
			start := time.Now()
			c := mustFetch(t, p, workload("settlement", nil))
			// NotAfter and Date are to the second.
			if d := c.Expiry.Sub(start); d > tc.want+time.Since(start) || d < tc.want-2*time.Second-time.Since(start) {
				t.Errorf("expiry %v after the request, want %v (at most, a second or two less)", d.Round(time.Millisecond), tc.want)
			}
			if got := strings.Contains(e.logs.String(), "clock is behind the gateway's by more than it is trusted for"); got != tc.logLine {
				t.Errorf("log line about the untrusted Date: %v, want %v\n%s", got, tc.logLine, e.logs.String())
			}
		})
	}
}
