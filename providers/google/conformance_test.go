package google_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/googletest"
	"github.com/credgate/credgate/providers/google"
	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes against the fake
// Google token endpoint: settings errors at FILE:LINE:COL, the access
// token redacted in every printed form, one grant for concurrent first
// requests, ctx honoured.
func TestConformance(t *testing.T) {
	f := newFixture(t, googletest.Options{})
	expand := strings.NewReplacer("JSONKEY", f.keyFile, "PEMKEY", f.pemFile, "CA", f.caFile, "TOKENURL", f.g.TokenURL).Replace
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     google.Name,
		Settings: expand("key: {file: JSONKEY}\nscopes: [" + cloudScope + "]\nca_cert: CA\n"),
		Bad: []providertest.BadSettings{
			{Settings: expand("scopes: [" + cloudScope + "]"), Want: "google:"},
			{Settings: expand("key: {file: JSONKEY}\nscopes: [" + cloudScope + "]\ntoken_url: http://oauth2.example.com/token"), Want: "https"},
		},
		Issued: f.g.Grants,
		Unauthorized: func(on bool) {
			if on {
				f.g.Fail(http.StatusUnauthorized)
			} else {
				f.g.Fail(0)
			}
		},
		Stalled: func(url string) string {
			return expand("key: {file: JSONKEY}\nscopes: [" + cloudScope + "]\ntoken_url: " + url + "/token\n")
		},
		Lifetime:        f.g.SetLifetime,
		LifetimeField:   "expires_in",
		DefaultLifetime: google.AccessTokenLifetime,
	})
}
