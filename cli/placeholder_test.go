package cli

import "testing"

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
