package awssts

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes against the fake
// STS (AssumeRoleWithWebIdentity with a token file, so the provider needs
// no source credential): settings errors at FILE:LINE:COL, the issued
// keys redacted in every printed form, one AssumeRole call for
// concurrent first requests, ctx honoured.
func TestConformance(t *testing.T) {
	sts := newFakeSTS(t, time.Now)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("NO_LEAK_web_identity_jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	role := "role_arn: 'arn:aws:iam::1:role/r'\nweb_identity_token_file: " + tok + "\n"
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     "awssts",
		Settings: role + "endpoint: " + sts.URL + "\n",
		Bad: []providertest.BadSettings{
			{Settings: "role_arn: nope\nweb_identity_token_file: " + tok, Want: "role_arn"},
			{Settings: role + "duration: 1m", Want: "duration"},
			{Settings: role + "endpoint: http://sts.example.com", Want: "https"},
		},
		Request: providers.Request{Workload: billing()},
		Issued:  func() int { return int(sts.n.Load()) },
		Unauthorized: func(on bool) {
			sts.mu.Lock()
			defer sts.mu.Unlock()
			sts.fail = nil
			if on {
				sts.fail = func(int) (int, string) { return http.StatusBadRequest, "InvalidIdentityToken" }
			}
		},
		Secrets: []string{"NO_LEAK_web_identity_jwt"},
		Stalled: func(url string) string {
			return role + "endpoint: " + url + "\nretries: 0\n"
		},
		Lifetime:      sts.life.Set,
		LifetimeField: "Expiration",
	})
}
