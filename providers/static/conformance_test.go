package static

import (
	"testing"

	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes (an env value;
// static has no service, so no ctx check, and its values never expire).
func TestConformance(t *testing.T) {
	t.Setenv("CREDGATE_CONFORMANCE_STATIC", value)
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     "static",
		Settings: "env: CREDGATE_CONFORMANCE_STATIC\n",
		NoExpiry: true,
		Bad: []providertest.BadSettings{
			{Settings: "", Want: "set one of env"},
			{Settings: "env: A\nfile: /b", Want: "static:"},
		},
	})
}
