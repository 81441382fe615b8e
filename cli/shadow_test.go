package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateWarnsShadowedRule: validate prints a shadowed rule as a
// warning at its line, naming both rules, before the ok line, and exits 0.
func TestValidateWarnsShadowedRule(t *testing.T) {
	pol := `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  api: {hosts: [api.example.com]}
rules:
  - name: all-of-api
    from: w
    to: api
    action: tunnel
  - name: api-admin-deny
    from: w
    to: api
    action: deny
default: deny
`
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "validate", "-c", path)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (a warning does not fail validation)\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := path + `:10:5: warning: rule "api-admin-deny" (rules[1]) can never decide a request: rule "all-of-api" (rules[0]), line 6, comes first and matches every request "api-admin-deny" matches (from, to, methods and paths), and has no when: condition; remove rule "api-admin-deny", or move it above rule "all-of-api" if it should take precedence (rules are tried in file order)`
	if len(lines) != 2 || lines[0] != want || !strings.HasPrefix(lines[1], path+": ok (") {
		t.Errorf("validate output:\n%s\nwant:\n%s\n%s: ok (...)", r.stdout, want, path)
	}
}
