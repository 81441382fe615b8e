package cli

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestClosedStdoutDoesNotKillServe: serve catches SIGPIPE, so a write to
// a stdout whose reader is gone (audit.output: stdout) fails with EPIPE,
// which the audit writer retries and counts, instead of killing the
// process and losing its buffered audit lines without a word. The child
// (this test binary, re-run) writes to such a stdout with serve's
// catchSIGPIPE in force; before, it died of SIGPIPE.
func TestClosedStdoutDoesNotKillServe(t *testing.T) {
	if os.Getenv("CREDGATE_TEST_SIGPIPE_CHILD") == "1" {
		defer catchSIGPIPE()()
		_, err := os.Stdout.Write([]byte("{}\n"))
		if !errors.Is(err, syscall.EPIPE) {
			os.Stderr.WriteString("want EPIPE, got " + errString(err) + "\n")
			os.Exit(3)
		}
		os.Stderr.WriteString("EPIPE\n")
		os.Exit(0)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close() // the reader is gone
	cmd := exec.Command(os.Args[0], "-test.run=^TestClosedStdoutDoesNotKillServe$")
	cmd.Env = append(os.Environ(), "CREDGATE_TEST_SIGPIPE_CHILD=1")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	_ = w.Close()
	if err != nil || !strings.Contains(stderr.String(), "EPIPE") {
		t.Errorf("the child writing to a closed stdout: %v (%s), want exit 0 after EPIPE", err, stderr.String())
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
