//go:build linux

package e2e

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credgate/credgate/internal/syncbuf"
)

// childLoop is a command that sets its traps, says it is ready ($0.ready)
// and waits at most 30 seconds.
const childLoop = `touch "$0.ready"; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 99`

// credgateRunLocal is credgate run without a token: it reads the gateway
// CA from a file and contacts nothing, so these tests need no gateway.
// Its private directory goes under tmp, which the caller checks is empty
// after the run. Setsid: no controlling terminal, so every signal sent to
// it is its alone (the terminal case is its own subtest).
func credgateRunLocal(t *testing.T, tmp string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"run", "--ca", gwCACert, "--gateway", "127.0.0.1:9"}, args...)...)
	cmd.Env = append(clientEnv(""), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// exitCodeOf is a finished command's exit status, -1 when it did not exit
// (killed by a signal: credgate run itself died).
func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("credgate run: %v", err)
	}
	return ee.ExitCode()
}

// noFilesLeft: credgate run removed its private directory.
func noFilesLeft(t *testing.T, tmp string) {
	t.Helper()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("credgate run left %s in TMPDIR", left[0].Name())
	}
}

// TestCredgateRunProcess: credgate run as a process launcher. A command
// that does not start exits 127 (not found) or 126 (not executable) with
// a message naming the cause, as a shell's; every signal whose default
// action would end credgate run is passed on, and credgate run waits for
// the command, returns its code and removes its files, and one that comes
// before the command starts ends credgate run with 128+N, nothing run and
// no files left (SIGTERM while the token was asked for killed it, leaving
// its directory, before); (SIGQUIT ended
// credgate run before, leaving the command running and the files behind;
// SIGUSR1, SIGUSR2 and SIGALRM were dropped); a command that handles
// SIGTERM and goes on is waited for; arguments, standard input and a long
// environment reach the command as given; Ctrl-C on a terminal is the
// command's to handle, and credgate run waits for it.
func TestCredgateRunProcess(t *testing.T) {
	t.Parallel()
	t.Run("a command that does not start", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name, data string, mode os.FileMode) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), mode); err != nil {
				t.Fatal(err)
			}
		}
		write("noexec.sh", "#!/bin/sh\necho hi\n", 0o644)
		write("noshebang", "echo hi\n", 0o755)
		write("badinterp", "#!/credgate/no/such/interpreter\n", 0o755)
		if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			cmd  string
			code int
			msg  string
		}{
			{"credgate-no-such-command", 127, "command not found"},
			{"./missing", 127, "no such file"},
			{"./badinterp", 127, "interpreter is missing"},
			{"./noexec.sh", 126, "cannot execute"},
			{"./adir", 126, "cannot execute"},
			{"./noshebang", 126, "nor a script starting with #!"},
		} {
			tmp := t.TempDir()
			cmd := credgateRunLocal(t, tmp, "--", c.cmd)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if got := exitCodeOf(t, err); got != c.code || !strings.Contains(string(out), c.msg) || !strings.Contains(string(out), c.cmd) {
				t.Errorf("credgate run -- %s: exit %d %q, want %d and %q", c.cmd, got, out, c.code, c.msg)
			}
			noFilesLeft(t, tmp)
		}
	})
	t.Run("signals are passed on", func(t *testing.T) {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM} {
			name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
			tmp, ready := t.TempDir(), filepath.Join(t.TempDir(), "child")
			cmd := credgateRunLocal(t, tmp, "--", "sh", "-c", "trap 'exit 42' "+name+"; "+childLoop, ready)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the child to set its trap", func() error {
				_, err := os.Stat(ready + ".ready")
				return err
			})
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if got := exitCodeOf(t, cmd.Wait()); got != 42 {
				t.Errorf("SIG%s: credgate run exited %d, want 42 (the command's trap)", name, got)
			}
			noFilesLeft(t, tmp)
		}
	})
	t.Run("a signal before the command starts", func(t *testing.T) {
		// The admin API takes the token request and does not answer:
		// SIGTERM then ends credgate run with 143, nothing run, no files
		// left. Before, SIGTERM killed it there, leaving the directory.
		asked := make(chan struct{}, 1)
		admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read to the end: the server then watches the connection,
			// and the context ends when credgate run closes it.
			_, _ = io.Copy(io.Discard, r.Body)
			asked <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}))
		defer admin.Close()
		tmp, marker := t.TempDir(), filepath.Join(t.TempDir(), "ran")
		cmd := credgateRunLocal(t, tmp, "--admin", admin.URL, "--workload", "agent", "--timeout", "60s", "--", "touch", marker)
		cmd.Env = append(cmd.Env, "CREDGATE_ADMIN_TOKEN=e2e-admin-token-0123456789")
		var out syncbuf.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-asked:
		case <-time.After(30 * time.Second):
			t.Fatal("credgate run never asked for the token")
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if got := exitCodeOf(t, cmd.Wait()); got != 143 || !strings.Contains(out.String(), "before the command started") {
			t.Errorf("credgate run exited %d, want 143 (128+SIGTERM): %s", got, out.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the command ran")
		}
		noFilesLeft(t, tmp)
	})
	t.Run("a command that handles SIGTERM and goes on is waited for", func(t *testing.T) {
		tmp, f := t.TempDir(), filepath.Join(t.TempDir(), "child")
		cmd := credgateRunLocal(t, tmp, "--", "sh", "-c", `trap 'touch "$0.term"' TERM; touch "$0.ready"; i=0; while [ ! -e "$0.stop" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 5`, f)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the child to set its trap", func() error { _, err := os.Stat(f + ".ready"); return err })
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the child to see SIGTERM", func() error { _, err := os.Stat(f + ".term"); return err })
		if err := os.WriteFile(f+".stop", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := exitCodeOf(t, cmd.Wait()); got != 5 {
			t.Errorf("credgate run exited %d, want 5 (the command's own exit)", got)
		}
		noFilesLeft(t, tmp)
	})
	t.Run("a signal that kills the command", func(t *testing.T) {
		tmp := t.TempDir()
		if got := exitCodeOf(t, credgateRunLocal(t, tmp, "--", "sh", "-c", "kill -KILL $$").Run()); got != 137 {
			t.Errorf("credgate run exited %d, want 137 (128+SIGKILL)", got)
		}
		noFilesLeft(t, tmp)
	})
	t.Run("arguments, stdin and a long environment", func(t *testing.T) {
		tmp := t.TempDir()
		big := strings.Repeat("x", 100<<10)
		// No --: the first argument that is not a flag is the command.
		cmd := credgateRunLocal(t, tmp, "sh", "-c", `printf '[%s]' "$@"; printf '%s ' "${#BIG}" "$N200"; cat`, "sh", "a b", "c\nd", "$HOME", "'q'", "--ca", "")
		for i := range 200 {
			cmd.Env = append(cmd.Env, "N"+strconv.Itoa(i)+"="+strings.Repeat("y", 1000))
		}
		cmd.Env = append(cmd.Env, "BIG="+big, "N200=last")
		cmd.Stdin = strings.NewReader("from stdin\n")
		out, err := cmd.CombinedOutput()
		want := "[a b][c\nd][$HOME]['q'][--ca][]102400 last from stdin\n"
		if err != nil || string(out) != want {
			t.Errorf("credgate run: %v\n got %q\nwant %q", err, out, want)
		}
		noFilesLeft(t, tmp)
	})
	t.Run("Ctrl-C on a terminal is the command's to handle", func(t *testing.T) {
		master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		defer master.Close()
		if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
			t.Fatal(err)
		}
		n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
		if err != nil {
			t.Fatal(err)
		}
		slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var screen syncbuf.Buffer
		go func() { _, _ = io.Copy(&screen, master) }() // ends with EIO once the terminal's last user closed it
		tmp, f := t.TempDir(), filepath.Join(t.TempDir(), "child")
		cmd := credgateRunLocal(t, tmp, "--", "sh", "-c", `trap 'echo INT >> "$0"' INT; trap 'echo TERM >> "$0"; exit 42' TERM; `+childLoop, f)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		// credgate run in a session of its own whose terminal is the pty:
		// the terminal's foreground process group is credgate run's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		slave.Close()
		waitFor(t, 10*time.Second, "the child to set its traps", func() error { _, err := os.Stat(f + ".ready"); return err })
		if _, err := master.Write([]byte{3}); err != nil { // Ctrl-C
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the child to see SIGINT", func() error {
			if b, _ := os.ReadFile(f); !strings.Contains(string(b), "INT") {
				return errors.New("no INT yet")
			}
			return nil
		})
		// The command handled SIGINT and goes on; SIGTERM ends it.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if got := exitCodeOf(t, cmd.Wait()); got != 42 {
			t.Errorf("credgate run exited %d, want 42\n%s", got, screen.String())
		}
		// The terminal's SIGINT and the one passed on may arrive as one.
		if b, _ := os.ReadFile(f); !strings.HasPrefix(string(b), "INT\n") || !strings.HasSuffix(string(b), "\nTERM\n") {
			t.Errorf("the command saw %q, want INT then TERM", b)
		}
		noFilesLeft(t, tmp)
	})
}
