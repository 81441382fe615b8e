package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// toolsBin is the directory scripts/tools.sh builds the real peers into:
// $CREDGATE_TOOLS_BIN, or ~/.cache/credgate/bin.
func toolsBin() (string, error) {
	if bin := os.Getenv("CREDGATE_TOOLS_BIN"); bin != "" {
		return bin, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory to find the tools in (set CREDGATE_TOOLS_BIN): %w", err)
	}
	return filepath.Join(home, ".cache", "credgate", "bin"), nil
}

// buildTool runs scripts/SCRIPT, which builds the peer NAME into the
// tools directory (cached: a second run only checks the version), and
// returns the binary's path. The script gets only what a process needs
// (minimalEnv): whatever the test process carries (make exports VERSION,
// which Hydra takes for its config schema "version") must not reach it.
// timeout bounds a cold build; make tools normally builds it before go
// test starts.
func buildTool(t *testing.T, script, name string, timeout time.Duration) (string, error) {
	t.Helper()
	bin, err := toolsBin()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", script))
	cmd.Env = append(minimalEnv(), "CREDGATE_TOOLS_BIN="+bin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("scripts/%s output:\n%s", script, tail(string(out), 30))
		return "", fmt.Errorf("scripts/%s failed after %v (%w): %s", script, time.Since(start).Round(time.Second), err, tail(strings.TrimSpace(string(out)), 1))
	}
	t.Logf("scripts/%s (%v): %s", script, time.Since(start).Round(time.Millisecond), strings.TrimSpace(tail(string(out), 1)))
	return filepath.Join(bin, name), nil
}

// builtTool returns the path of NAME in the tools directory, or skips
// the test saying which script builds it.
func builtTool(t *testing.T, name, script string) string {
	t.Helper()
	bin, err := toolsBin()
	if err != nil {
		t.Skip(err)
	}
	p := filepath.Join(bin, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s missing: run bash scripts/%s (make tools)", p, script)
	}
	return p
}
