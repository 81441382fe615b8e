package oauth2

import (
	"testing"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
)

// TestCacheScopeClass: oauth2 has no setting rendered from workload
// attributes (token_exchange's subject token is covered by
// TestTokenExchange); the check keeps every new setting classified.
func TestCacheScopeClass(t *testing.T) {
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fixed: []string{"token_url", "grant", "client_id", "client_auth", "client_secret", "client_key", "assertion_audience",
			"assertion_lifetime", "scopes", "audience", "resource", "params", "token_exchange", "jwt_bearer", "default_expires_in",
			"expiry_margin", "retries", "retry_backoff", "timeout", "ca_cert"},
		New: func(t *testing.T, _ map[string]string) providers.Provider {
			return providertest.Load(t, "oauth2", "token_url: https://auth.example/token\nclient_id: c\nclient_secret: {value: s}\n")
		},
	})
}

// TestScopeBaseSettings: two providers that differ in one setting that
// selects a token have different scopes, lists included ([a b] is not
// ["a b"]).
func TestScopeBaseSettings(t *testing.T) {
	base := "token_url: https://auth.example/token\nclient_id: c\nclient_secret: {value: s}\n"
	scopes := map[string]string{}
	for _, extra := range []string{
		"",
		"scopes: [a, b]",
		"scopes: ['a b']",
		"scopes: [a, b, '']",
		"audience: https://api.example",
		"audience: https://api.example/",
		"resource: ['https://r.example/']",
		"params: {tenant: acme}",
		"params: {tenant: acme2}",
		"params: {tenant2: acme}",
	} {
		p := providertest.Load(t, "oauth2", base+extra).(*Provider)
		s := p.CacheScope(providers.Request{})
		if prev, dup := scopes[s]; dup {
			t.Errorf("%q and %q share scope %s", prev, extra, s)
		}
		scopes[s] = extra
	}
}
