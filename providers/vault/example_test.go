package vault_test

import (
	"context"
	"os"
	"testing"

	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	_ "github.com/credgate/credgate/providers/vault"
)

// TestExamplePolicy checks that examples/vault.yaml loads: every vault
// credential in it is built and validated, without contacting Vault.
func TestExamplePolicy(t *testing.T) {
	const file = "../../examples/vault.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(context.Background(), file, data)
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, name := range []string{"vault", "vault-pki"} {
		if _, ok := providers.Lookup(name); !ok {
			t.Errorf("provider %s not registered", name)
		}
	}
}
