// Package injectortest helps the tests of injector plugins, in-tree and
// out-of-tree: build an injector from YAML settings through the registry
// (the lifecycle a policy runs), and make a credential from field values.
// It exists so that each plugin's tests do not carry a copy of these.
package injectortest

import (
	"context"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Load builds the injector registered as name from settings (YAML; ""
// means none) through injectors.Load.
func Load(t testing.TB, name, settings string) (injectors.Injector, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
		t.Fatalf("injectortest: settings are not YAML: %v", err)
	}
	var n *yaml.Node
	if len(doc.Content) > 0 {
		n = doc.Content[0]
	}
	return injectors.Load(context.Background(), name, n)
}

// Cred returns a credential with the given fields: Cred("token", "v",
// "user", "u").
func Cred(kv ...string) *providers.Credential {
	c := &providers.Credential{Fields: map[string]providers.Secret{}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Fields[kv[i]] = providers.NewSecret(kv[i+1])
	}
	return c
}
