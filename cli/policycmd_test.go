package cli

import (
	"fmt"
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

// TestPolicyHostileAudit: policy suggest and diff over an audit file with
// lines cut short, a line longer than the reader takes, a malformed
// request's refusal, and then a line whose host is a wildcard: the lines
// that are not whole audit lines are skipped as audit.ReadRecords skips
// them, the refusal is not replayed (counted), and the wildcard line is
// an error naming its file and line, never a rule or a guess.
func TestPolicyHostileAudit(t *testing.T) {
	setEnv(t)
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	hostile := auditLines +
		`{"time":"2026-12-02T06:03:00.000Z","workload":"billing","source":"10.1.2` + "\n" +
		`{"time":"2026-12-02T06:03:00.000Z","path":"/` + strings.Repeat("a", 17<<20) + `"}` + "\n" +
		`{"time":"2026-12-02T06:04:00.000Z","workload":"anonymous","source":"10.1.2.3","method":"get","scheme":"","host":"","port":0,"path":"","rule":"","decision":"deny","code":"malformed_request","credential":"","status":400}` + "\n"
	wild := `{"time":"2026-12-02T06:05:00.000Z","workload":"billing","source":"10.1.2.3","method":"GET","scheme":"https","host":"*.com","port":443,"path":"/v1/refunds","rule":"","decision":"would_deny","code":"no_rule","credential":"","status":200}` + "\n"
	if err := os.WriteFile(auditFile, []byte(hostile), 0o600); err != nil {
		t.Fatal(err)
	}
	// The cut line is skipped, counted and named on stderr; the exit
	// status is the same. Before, it was skipped in silence.
	cutLine := strings.Count(auditLines, "\n") + 1
	cutSays := fmt.Sprintf("1 lines skipped: not JSON (cut short?) — %s:%d of the first", auditFile, cutLine)
	r := runCLI(t, "policy", "diff", "testdata/observe-policy.yaml", "testdata/observe-policy.yaml", "--audit", auditFile)
	if r.code != 0 || !strings.Contains(r.stdout, "0 request(s) change outcome, from 4 audit line(s) replayed (1 refused before any policy decided it") {
		t.Errorf("diff over cut and malformed lines: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "credgate policy diff: warning: "+cutSays) || strings.Contains(r.stdout, "skipped") {
		t.Errorf("diff over a cut line: stderr %q, want %q (and not on stdout: %q)", r.stderr, cutSays, r.stdout)
	}
	if r := runCLI(t, "policy", "suggest", "--audit", auditFile, "--policy", "testdata/observe-policy.yaml"); r.code != 0 || !strings.Contains(r.stderr, "credgate policy suggest: warning: "+cutSays) || strings.Contains(r.stdout, "skipped") {
		t.Errorf("suggest over cut and malformed lines: exit %d, stderr %q, want %q on it", r.code, r.stderr, cutSays)
	}
	if err := os.WriteFile(auditFile, []byte(hostile+wild), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"policy", "diff", "testdata/observe-policy.yaml", "testdata/observe-policy.yaml", "--audit", auditFile},
		{"policy", "suggest", "--audit", auditFile, "--policy", "testdata/observe-policy.yaml"},
	} {
		r := runCLI(t, args...)
		if want := auditFile + `:7: not a request line the gateway writes: host "*.com"`; r.code != exitError || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "*.com") {
			t.Errorf("%s over a wildcard host: exit %d, want 1 and %q on stderr\nstdout %q\nstderr %q", args[1], r.code, want, r.stdout, r.stderr)
		}
	}
}
