package cli

import (
	"context"

	"github.com/credgate/credgate/identity"
)

// testVerifier is an identity verifier plugin registered only in this
// package's tests, so that `credgate plugins` has one to list (the
// standard build compiles in none).
type testVerifier struct {
	// TrustRoot is a PEM file of the attestation roots.
	TrustRoot string `yaml:"trust_root"`
	// MaxAge bounds an attestation's age.
	MaxAge string `yaml:"max_age"`
}

func (*testVerifier) Kind() string { return "test-attestation" }

func (*testVerifier) Verify(context.Context, identity.Evidence) (*identity.Factor, error) {
	return nil, nil
}

func init() {
	identity.Register(identity.Module{
		Name: "test-attestation",
		Doc:  "a verifier registered by cli's tests",
		SettingDocs: map[string]string{
			"trust_root": "PEM file of the attestation roots",
			"max_age":    "bound on an attestation's age",
		},
		New: func() identity.Verifier { return new(testVerifier) },
	})
}
