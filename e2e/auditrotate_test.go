package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAuditFileExternalRotation runs the real binary with a file audit
// output and rotates it from outside, as logrotate does: renamed and
// SIGHUP (logrotate's create + postrotate), then renamed with no signal
// (found by the gateway at its next write). Every request's line is in
// one of the files, the reopens are counted by reason, and the three
// files verify as one chain up to the final checkpoint of a clean stop.
func TestAuditFileExternalRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	key := checkpointKey(t, dir)
	e := &env{t: t, dir: dir, origin: startOrigin(t), token: randomToken(t)}
	e.configPath = filepath.Join(dir, "credgate.yaml")
	e.policyPath = filepath.Join(dir, "policy.yaml")
	e.auditKey = key
	e.writePolicy("", envOptions{})
	e.writeConfig(envOptions{AuditConfig: fmt.Sprintf("  checkpoint:\n    key_file: %q\n", key), AuditOutput: auditFile})
	e.start()

	c := newGoClient(t, e.proxyURL, gwCACert, false)
	request := func(path string) {
		t.Helper()
		if st, _, _ := get(t, c, "GET", "https://"+apiHost+path, ""); st != http.StatusOK {
			t.Fatalf("GET %s: %d", path, st)
		}
	}
	inFile := func(path, file string) {
		t.Helper()
		waitFor(t, 10*time.Second, path+"'s audit line in "+filepath.Base(file), func() error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), `"`+path+`"`) {
				return fmt.Errorf("not there yet (%d bytes)", len(b))
			}
			return nil
		})
	}
	reopens := func(reason string, want float64) {
		t.Helper()
		sample := fmt.Sprintf(`credgate_audit_reopens_total{reason=%q}`, reason)
		waitFor(t, 10*time.Second, sample, func() error {
			if got := e.metric(t, sample); got < want {
				return fmt.Errorf("%s = %v, want %v", sample, got, want)
			}
			return nil
		})
	}

	request("/v1/before-rotation")
	inFile("/v1/before-rotation", auditFile)

	// logrotate: rename, then postrotate sends SIGHUP.
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	e.signal(syscall.SIGHUP)
	reopens("signal", 1)
	request("/v1/after-sighup")
	inFile("/v1/after-sighup", auditFile)

	// Renamed with no signal: found at the next write.
	if err := os.Rename(auditFile, auditFile+".2"); err != nil {
		t.Fatal(err)
	}
	request("/v1/after-rename")
	inFile("/v1/after-rename", auditFile)
	reopens("removed", 1)

	e.signal(syscall.SIGTERM)
	if exited, err := e.wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("gateway after SIGTERM: exited %v, %v", exited, err)
	}
	for _, f := range []string{auditFile + ".1", auditFile + ".2"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "/v1/after-") && f == auditFile+".1" {
			t.Errorf("%s holds a line written after it was rotated away", f)
		}
	}
	pub := filepath.Join(dir, "audit.pub")
	out, code := runCLI(t, 30*time.Second, nil, "audit", "pubkey", "--key", key)
	if code != 0 {
		t.Fatalf("audit pubkey: exit %d\n%s", code, out)
	}
	if err := os.WriteFile(pub, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, 30*time.Second, nil, "audit", "verify", "--require-final", "--pubkey", pub, auditFile+".1", auditFile+".2", auditFile)
	if code != 0 {
		t.Errorf("audit verify --require-final over the three files: exit %d\n%s", code, tail(out, 20))
	}
}
