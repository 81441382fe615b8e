package cli

import "testing"

// TestPlugins pins the listing of the standard plugins (cmd/credgate's
// imports, which imports_test.go repeats): names, one-line docs, settings
// with their types. A new plugin or setting updates the golden file
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
