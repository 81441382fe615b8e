package awssts

import (
	"fmt"
	"testing"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
)

// TestCacheScopeClass: every caller-dependent input of an STS session is
// in the cache scope in full, not as the 64-character sanitised session
// name (distinct sub values used to collide).
func TestCacheScopeClass(t *testing.T) {
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fields: []string{"session_name", "source_identity", "session_tags.team", "session_tags.cost"},
		Fixed: []string{"role_arn", "region", "endpoint", "ca_file", "source_credential", "web_identity_token_file",
			"web_identity_from", "transitive_tag_keys", "session_policy", "policy_arns", "external_id", "duration", "retries"},
		New: func(t *testing.T, a map[string]string) providers.Provider {
			return providertest.Load(t, "awssts", fmt.Sprintf(`role_arn: arn:aws:iam::123456789012:role/r
session_name: 'credgate-{{.workload.%s}}'
source_identity: '{{.workload.%s}}'
session_tags: {team: %s, cost: %s}
`, a["session_name"], a["source_identity"], a["session_tags.team"], a["session_tags.cost"]))
		},
	})
}
