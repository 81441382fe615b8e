package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrongInputFile: each command that takes -c names the file and the
// fix when the file cannot be read or is the other kind; a config with
// only sections added later (admin, tracing, session_tickets) is still
// told from a policy.
func TestWrongInputFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("workloads: {}\nrules: []\ndefault: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"validate, missing", []string{"validate", "-c", missing}, []string{missing + ": cannot read it (no such file or directory); give"}},
		{"serve, missing", []string{"serve", "-c", missing}, []string{missing + ": cannot read it (no such file or directory); give"}},
		{"explain, missing", []string{"explain", "-c", missing, "GET", "https://api.test/"}, []string{missing + ": cannot read it"}},
		{"serve, a policy", []string{"serve", "-c", pol}, []string{pol + ": this is a policy", "not a gateway config", "policy: key"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, c.args...)
			out := r.stdout + r.stderr
			if r.code == 0 {
				t.Fatalf("exit 0:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	for _, key := range configKeys {
		kind, err := detectKind("x.yaml", []byte(key+": {}\n"))
		if err != nil || kind != kindConfig {
			t.Errorf("a file with only %s: is taken as %v (%v), want a gateway config", key, kind, err)
		}
	}
	for _, key := range []string{"admin", "tracing", "session_tickets", "run_tokens", "identity"} {
		if !strings.Contains(" "+strings.Join(configKeys, " ")+" ", " "+key+" ") {
			t.Errorf("configKeys lacks %s", key)
		}
	}
}
