// Package all is the list of compiled-in providers. Importing it (for its
// side effects) registers every provider below with
// providers.DefaultRegistry; cmd/credgate imports it (as may a custom build,
// examples/custom-build). To add a provider
// to the binary, add one blank import here.
package all

import (
	_ "github.com/credgate/credgate/providers/awssts"     // awssts: AWS STS AssumeRole / AssumeRoleWithWebIdentity per workload
	_ "github.com/credgate/credgate/providers/azure"      // azure: Microsoft Entra ID tokens (client secret, certificate assertion, workload identity federation)
	_ "github.com/credgate/credgate/providers/githubapp"  // github-app: GitHub App installation tokens, narrowed per credential
	_ "github.com/credgate/credgate/providers/google"     // google: service-account access tokens, self-signed JWTs and ID tokens; keyless workload identity federation
	_ "github.com/credgate/credgate/providers/oauth2"     // oauth2: access tokens (client credentials, private_key_jwt, token exchange, JWT bearer)
	_ "github.com/credgate/credgate/providers/salesforce" // salesforce: OAuth 2.0 JWT bearer flow, the token pinned to its instance host
	_ "github.com/credgate/credgate/providers/slack"      // slack: Slack access tokens refreshed with the app's rotating refresh token
	_ "github.com/credgate/credgate/providers/snowflake"  // snowflake: key-pair JWTs for the SQL API and REST APIs
	_ "github.com/credgate/credgate/providers/static"     // static: env var or file, for development and platform-mounted secrets
	_ "github.com/credgate/credgate/providers/vault"      // vault, vault-pki: HashiCorp Vault / OpenBao KV, dynamic secrets, PKI client certificates
)
