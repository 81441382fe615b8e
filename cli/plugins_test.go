package cli

import (
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/providers"
)

// TestPlugins pins the listing of the standard plugins (cmd/credgate's
// imports, which imports_test.go repeats) and of the test-attestation
// verifier (verifier_test.go): names, one-line docs, settings with their
// types. A new plugin or setting updates the golden file
// (go test ./cli -run TestPlugins -update).
func TestPlugins(t *testing.T) {
	r := runCLI(t, "plugins")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	golden(t, "plugins", r.stdout)
}

func TestPluginsNoArgs(t *testing.T) {
	if r := runCLI(t, "plugins", "extra"); r.code != exitError {
		t.Errorf("plugins extra: exit %d, want %d", r.code, exitError)
	}
}

// TestPluginDocs: every compiled-in plugin has a Doc line, every setting
// a SettingDocs line, and no SettingDocs key names a setting the plugin
// does not have (a renamed field leaves no stale line behind).
func TestPluginDocs(t *testing.T) {
	check := func(kind, name, doc string, v any, docs map[string]string) {
		t.Helper()
		if doc == "" {
			t.Errorf("%s %s has no Doc", kind, name)
		}
		have := map[string]bool{}
		for _, s := range module.Settings(v, docs) {
			have[s.Name] = true
			if s.Doc == "" {
				t.Errorf("%s %s: setting %s has no SettingDocs line", kind, name, s.Name)
			}
		}
		for k := range docs {
			if !have[k] {
				t.Errorf("%s %s: SettingDocs names %q, which is not a setting", kind, name, k)
			}
		}
	}
	for _, n := range providers.Names() {
		m, _ := providers.Lookup(n)
		check("provider", n, m.Doc, m.New(), m.SettingDocs)
	}
	for _, n := range injectors.Names() {
		m, _ := injectors.Lookup(n)
		check("injector", n, m.Doc, m.New(), m.SettingDocs)
	}
	for _, n := range identity.DefaultRegistry.Plugins() {
		m, _ := identity.Lookup(n)
		check("identity verifier", n, m.Doc, m.New(), m.SettingDocs)
	}
}
