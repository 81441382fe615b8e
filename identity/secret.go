package identity

import "github.com/credgate/credgate/secret"

// Token holds a verified bearer token (a JWT, a Kubernetes service
// account token). It is a secret.Value: every printed form is
// "[REDACTED]", so a Factor or Workload that reaches a log line, an error
// or a JSON document leaks nothing. Only a provider that sends the token
// onward calls Reveal.
type Token = secret.Value

// NewToken wraps v.
func NewToken(v string) Token { return secret.New(v) }
