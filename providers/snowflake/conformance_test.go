package snowflake_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
	"github.com/credgate/credgate/providers/snowflake"
)

func newTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestConformance runs the checks every provider passes: settings errors
// at FILE:LINE:COL, the JWT redacted in every printed form, one mint for
// concurrent first requests, a fresh JWT after expiry. Snowflake has no
// token endpoint (the gateway signs the JWT itself), so there is no
// stalled service to cancel against.
func TestConformance(t *testing.T) {
	f := newFixture(t)
	key := "private_key: {file: " + f.keyFile + "}\n"
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     snowflake.Name,
		Settings: "account: myorg-myaccount\nuser: etl_service\n" + key,
		Bad: []providertest.BadSettings{
			{Settings: "user: etl_service\n" + key, Want: "snowflake: set account"},
			{Settings: "account: myorg-myaccount\n" + key, Want: "snowflake: set user"},
			{Settings: "account: myorg-myaccount\nuser: etl_service\n", Want: "snowflake: set private_key"},
			{Settings: "account: a/b\nuser: etl_service\n" + key, Want: "is not an account identifier"},
			{Settings: "account: myorg-myaccount\nuser: \"etl service\"\n" + key, Want: "use the user's login name"},
			{Settings: "account: myorg-myaccount\nuser: etl_service\n" + key + "lifetime: 2h\n", Want: "set at most 1h"},
			{Settings: "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: " + f.keyFile + ", algorithm: ES256}\n", Want: "Snowflake key-pair JWTs are RS256"},
			{Settings: "account: myorg-myaccount\nuser: etl_service\nprivate_key: {transit: {key: k}, algorithm: RS256}\n", Want: "transit is not supported"},
			{Settings: "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: " + f.keyFile + ", credential: k}\n", Want: "not several"},
		},
	})
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fixed: []string{"account", "user", "private_key", "lifetime"},
		New: func(t *testing.T, _ map[string]string) providers.Provider {
			return providertest.Load(t, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\n"+key)
		},
	})
}
