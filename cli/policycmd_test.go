package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplainObserve(t *testing.T) {
	setEnv(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{name: "explain-observe-would-deny", args: []string{"--source", "10.1.2.3", "GET", "https://api.stripe.com/v1/refunds"}, wantCode: exitDenied},
		{name: "explain-observe-connect", args: []string{"--source", "10.1.2.3", "GET", "https://unlisted.example.com/x"}, wantCode: exitDenied},
		{name: "explain-observe-enforced", args: []string{"--source", "10.2.0.1", "GET", "https://api.stripe.com/v1/refunds"}, wantCode: exitDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"explain", "-c", "testdata/observe-policy.yaml"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			golden(t, tt.name, r.stdout+r.stderr)
		})
	}
}

// auditLines are recorded requests: one injected, one let through by
// observe mode, one refused.
const auditLines = `{"time":"2026-12-02T06:00:00.000Z","workload":"billing","factors":["source"],"source":"10.1.2.3","method":"GET","scheme":"https","host":"api.stripe.com","port":443,"path":"/v1/charges/ch_3MmlLrLkdIwHu7ix","rule":"charges","decision":"inject","code":"","credential":"stripe-key","status":200}
{"time":"2026-12-02T06:01:00.000Z","workload":"billing","factors":["source"],"source":"10.1.2.3","method":"GET","scheme":"https","host":"api.stripe.com","port":443,"path":"/v1/refunds","rule":"","decision":"would_deny","code":"path_not_allowed","credential":"","status":200}
{"time":"2026-12-02T06:02:00.000Z","workload":"web","factors":["source"],"source":"10.2.0.1","method":"GET","scheme":"https","host":"api.stripe.com","port":443,"path":"/v1/refunds","rule":"","decision":"deny","code":"path_not_allowed","credential":"","status":403}
`

func TestPolicySuggestAndDiff(t *testing.T) {
	setEnv(t)
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(auditFile, []byte(auditLines), 0o600); err != nil {
		t.Fatal(err)
	}
	suggested := filepath.Join(dir, "suggested.yaml")
	if r := runCLI(t, "policy", "suggest", "--audit", auditFile, "--policy", "testdata/observe-policy.yaml", "-o", suggested); r.code != 0 {
		t.Fatalf("suggest: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, "validate", "-c", suggested); r.code != 0 {
		t.Fatalf("validate the suggestion: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	// Same policy: nothing changes.
	r := runCLI(t, "policy", "diff", "testdata/observe-policy.yaml", "testdata/observe-policy.yaml", "--audit", auditFile)
	if r.code != 0 || !strings.Contains(r.stdout, "0 request(s) change outcome, from 3 audit line(s) replayed") {
		t.Errorf("diff of a policy with itself: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The suggestion allows what billing did, in enforce mode.
	r = runCLI(t, "policy", "diff", "testdata/observe-policy.yaml", suggested, "--audit", auditFile)
	want := "would_deny [path_not_allowed] -> inject by rule billing-api.stripe.com with credential stripe-key\n  billing          GET https://api.stripe.com/v1/refunds  (1 line(s), first " + auditFile + ":2)\n"
	if r.code != exitError || !strings.Contains(r.stdout, want) {
		t.Errorf("diff against the suggestion: exit %d, want 1 and\n%s\ngot\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	if r := runCLI(t, "policy", "diff", "testdata/observe-policy.yaml", "testdata/missing.yaml", "--audit", auditFile); r.code != exitError || !strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("diff with a missing policy: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, "policy", "suggest"); r.code != exitError || !strings.Contains(r.stderr, "--audit FILE is required") {
		t.Errorf("suggest without --audit: exit %d, stderr %q", r.code, r.stderr)
	}
}
