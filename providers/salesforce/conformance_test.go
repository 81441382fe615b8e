package salesforce_test

import (
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/salesforcetest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
	"github.com/credgate/credgate/providers/salesforce"
)

// TestConformance runs the checks every provider passes against the fake
// Salesforce: settings errors at FILE:LINE:COL, the access token redacted
// in every printed form, one grant for concurrent first requests, a new
// token after expiry, ctx honoured.
func TestConformance(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	good := f.settings("")
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     salesforce.Name,
		Settings: good,
		Bad: []providertest.BadSettings{
			{Settings: strings.Replace(good, "client_id: "+consumerKey+"\n", "", 1), Want: "salesforce: set client_id"},
			{Settings: strings.Replace(good, "username: "+user+"\n", "", 1), Want: "salesforce: set username"},
			{Settings: "client_id: x\nusername: u\n", Want: "salesforce: set private_key"},
			{Settings: strings.Replace(good, f.sf.URL, "http://login.example.com", 1), Want: "use https"},
			{Settings: strings.Replace(good, f.sf.URL, f.sf.URL+"/services/oauth2/token", 1), Want: "write the origin only"},
			{Settings: strings.Replace(good, "[127.0.0.1, localhost]", `["*"]`, 1), Want: "is not a host name or *.domain pattern"},
			{Settings: good + "session_timeout: 48h\n", Want: "between 2m and 24h"},
			{Settings: good + "audience: http://login.salesforce.com\n", Want: "use https"},
			{Settings: strings.Replace(good, "{file: "+f.keyFile+"}", "{file: "+f.keyFile+", algorithm: ES256}", 1), Want: "is RS256"},
		},
		Issued: f.sf.Grants,
		Stalled: func(url string) string {
			return strings.Replace(good, "login_url: "+f.sf.URL, "login_url: "+url, 1)
		},
	})
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fixed: []string{"login_url", "audience", "client_id", "username", "private_key", "instance_hosts", "session_timeout", "ca_cert", "timeout"},
		New: func(t *testing.T, _ map[string]string) providers.Provider {
			return providertest.Load(t, salesforce.Name, good)
		},
	})
}
