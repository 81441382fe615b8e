package vault

import (
	"fmt"
	"testing"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
)

// scopeServer is a server: mapping that Provision accepts without
// contacting anything.
const scopeServer = "server: {address: 'https://127.0.0.1:1', auth: {method: token, token_env: CREDGATE_UNUSED}}\n"

// TestCacheScopeClass: every templated setting of "vault" and
// "vault-pki" is in the cache scope in full. Two namespaces once shared
// one certificate naming the first, because the SANs were not.
func TestCacheScopeClass(t *testing.T) {
	t.Run("vault", func(t *testing.T) {
		providertest.CheckScopes(t, providertest.ScopeCheck{
			Fields: []string{"path"},
			Fixed:  []string{"server", "field", "version", "ttl", "revoke_on_cleanup"},
			New: func(t *testing.T, a map[string]string) providers.Provider {
				return providertest.Load(t, "vault", scopeServer+fmt.Sprintf("path: 'secret/data/app-{{.workload.%s}}'", a["path"]))
			},
		})
	})
	t.Run("vault-pki", func(t *testing.T) {
		providertest.CheckScopes(t, providertest.ScopeCheck{
			Fields: []string{"common_name", "alt_names[0]", "alt_names[1]", "uri_sans[0]", "uri_sans[1]"},
			Fixed:  []string{"server", "mount", "role", "ttl", "revoke_on_cleanup"},
			New: func(t *testing.T, a map[string]string) providers.Provider {
				return providertest.Load(t, "vault-pki", scopeServer+fmt.Sprintf(`role: clients
common_name: '{{.workload.%s}}.clients.example.com'
alt_names: ['{{.workload.%s}}.svc', 'x-{{.workload.%s}}.example.com']
uri_sans: ['spiffe://example.org/ns/{{.workload.%s}}', 'urn:{{.workload.%s}}']
`, a["common_name"], a["alt_names[0]"], a["alt_names[1]"], a["uri_sans[0]"], a["uri_sans[1]"]))
			},
		})
	})
}
