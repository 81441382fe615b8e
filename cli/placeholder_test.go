package cli

import (
	"strings"
	"testing"
)

// TestExplainPlaceholders: explain prints the placeholder a workload
// sends for the rule's credential: the fixed string, or the one generated
// for that workload, and whether the rule requires it.
func TestExplainPlaceholders(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"explain-placeholder-fixed", []string{"--source", "10.20.0.5", "POST", "https://api.telegram.org/botCREDGATE_PH_telegram_bot/sendMessage"}},
		{"explain-placeholder-per-workload", []string{"--source", "10.20.0.5", "GET", "https://gateway.discord.gg/?v=10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"explain", "-c", "../examples/agents.yaml"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			golden(t, tt.name, r.stdout)
		})
	}
}

// TestValidateWarnsWithoutSubstituteIn: validate names, at FILE:LINE:COL,
// each placeholder rule that sets no substitute_in (its placeholder is
// replaced in the default places), and still exits 0; a policy whose
// placeholder rules all name their places gets no warning.
func TestValidateWarnsWithoutSubstituteIn(t *testing.T) {
	r := runCLI(t, "validate", "-c", "testdata/ranges-policy.yaml")
	want := `testdata/ranges-policy.yaml:36:5: warning: rule "s3-agent" (rules[1]): credential "aws-agent" has a placeholder and the rule sets no substitute_in`
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "testdata/ranges-policy.yaml: ok (") {
		t.Errorf("exit %d:\n%s%s\nwant exit 0, a line starting %q and ok", r.code, r.stdout, r.stderr, want)
	}
	r = runCLI(t, "validate", "-c", "../examples/agents.yaml")
	if r.code != 0 || strings.Contains(r.stdout, "warning") {
		t.Errorf("examples/agents.yaml: exit %d:\n%s%s\nwant exit 0 without warnings", r.code, r.stdout, r.stderr)
	}
}
