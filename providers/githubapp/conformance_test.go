package githubapp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/githubtest"
	"github.com/credgate/credgate/providers/githubapp"
	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes against the fake
// GitHub: settings errors at FILE:LINE:COL, the token redacted in every
// printed form, one mint for concurrent first requests, ctx honoured.
func TestConformance(t *testing.T) {
	f := newFixture(t, githubtest.Options{})
	key := pemFile(t, appKey)
	expand := strings.NewReplacer("BASE", f.gh.URL, "CA", f.caFile, "KEY", key).Replace
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     githubapp.Name,
		Settings: expand(base + "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\nrepositories: [widgets]\npermissions: {contents: read}\n"),
		Bad: []providertest.BadSettings{
			{Settings: expand("private_key: {file: KEY}\ninstallation_id: 1"), Want: "set app_id"},
			{Settings: expand("app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nbase_url: http://github.example.com/api/v3"), Want: "must use https"},
			{Settings: expand("app_id: 1\nprivate_key: {file: KEY}\ninstallation_id: 1\nrepositories: [acme/widgets]"), Want: "write names without the owner"},
			{Settings: "app_id: abc\ninstallation_id: 1", Want: "app_id: want a whole number, got a string"},
		},
		Issued: f.gh.Mints,
		Unauthorized: func(on bool) {
			if on {
				f.gh.Fail(http.StatusUnauthorized)
			} else {
				f.gh.Fail(0)
			}
		},
		Stalled: func(url string) string {
			return expand("base_url: " + url + "\napp_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\n")
		},
		Lifetime:        f.gh.SetLifetime,
		LifetimeField:   "expires_at",
		DefaultLifetime: githubapp.TokenLifetime,
	})
}
