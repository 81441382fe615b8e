// Package newcomer_test follows the README as a new user would, in a fresh
// clone of this repository: it runs the demo (`go run ./cmd/credgate demo`)
// and every command the demo prints, then the Quickstart's shell block as
// written, and checks that each works. Where another process holds one of
// the README's fixed ports (3128, 3180, 8443) the test uses free ports
// instead, replacing the numbers in the text, and says so.
package newcomer_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/poll"

	"github.com/credgate/credgate/internal/syncbuf"
)

// clone makes a fresh clone of the committed tree, as a newcomer has.
func clone(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", repo, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	dir := filepath.Join(t.TempDir(), "credgate")
	if out, err := exec.Command("git", "clone", "--quiet", repo, dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	return dir
}

// readmeBlock returns the first ```sh block after heading in dir's README.
func readmeBlock(t *testing.T, dir, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	i = strings.Index(s, "```sh\n")
	j := strings.Index(s[i+6:], "\n```")
	if i < 0 || j < 0 {
		t.Fatalf("no sh block under %q", heading)
	}
	return s[i+6 : i+6+j+1]
}

// portFor returns port if 127.0.0.1:port can be bound now, else a free one.
func portFor(t *testing.T, port int) int {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		ln.Close()
		return port
	}
	p := freeport.Get(t)
	t.Logf("port %d is taken on this machine; using %d instead", port, p)
	return p
}

// syncBuffer captures output goroutines write while the test reads.
type syncBuffer = syncbuf.Buffer

// start runs a bash script in dir in its own process group, killed when
// the test ends.
func start(t *testing.T, dir, script string, out io.Writer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return cmd
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.True(t, d, what, cond)
}

// TestDemo runs the README's first command and every command it prints.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds credgate in a fresh clone")
	}
	for _, tool := range []string{"curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := clone(t)
	var demoLine string
	for _, l := range strings.Split(readmeBlock(t, dir, "## Two commands on a fresh machine"), "\n") {
		if strings.Contains(l, "credgate demo") {
			demoLine = strings.TrimSpace(strings.SplitN(l, "#", 2)[0])
		}
	}
	if demoLine != "go run ./cmd/credgate demo" {
		t.Fatalf("the README's demo command is %q", demoLine)
	}
	if p := portFor(t, 3128); p != 3128 {
		demoLine += fmt.Sprintf(" --listen 127.0.0.1:%d", p)
	}
	out := new(syncBuffer)
	start(t, dir, "exec "+demoLine, out)
	waitFor(t, 5*time.Minute, "the demo to print its commands", func() bool { return strings.Contains(out.String(), "Press Ctrl-C to stop.") })

	n := 0
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "curl ") && !strings.HasPrefix(line, "HTTPS_PROXY=") {
			continue
		}
		if strings.Contains(line, "python3") {
			if _, err := exec.LookPath("python3"); err != nil {
				t.Logf("python3 is not installed: not running %s", line)
				continue
			}
		}
		n++
		res, err := exec.Command("bash", "-c", line).CombinedOutput()
		if err != nil || !strings.Contains(string(res), `"host"`) && !strings.Contains(strings.ToLower(string(res)), "x-credgate-reason") {
			t.Errorf("the demo printed %q; it failed: %v\n%s", line, err, res)
			continue
		}
		t.Logf("ok: %s", line)
	}
	if n < 3 {
		t.Errorf("the demo printed %d commands to run, want at least 3:\n%s", n, out.String())
	}
}

// TestQuickstart runs the Quickstart's shell block, literally, in a fresh
// clone. Between a command started in the background (`&`) and the next,
// it waits for that command's port to accept connections, as a person
// reading the output would.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds credgate in a fresh clone")
	}
	for _, tool := range []string{"curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := clone(t)
	block := readmeBlock(t, dir, "## Quickstart (5 minutes, offline)")
	ports := map[int]int{}
	for _, p := range []int{3128, 3180, 8443} {
		if !strings.Contains(block, fmt.Sprint(p)) {
			t.Fatalf("the Quickstart no longer uses port %d; update this test", p)
		}
		if q := portFor(t, p); q != p {
			ports[p] = q
		}
	}
	var script strings.Builder
	// Background commands are stopped when the script ends, however it ends.
	script.WriteString("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nwait_port() { for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo \"port $1 did not open\" >&2; return 1; }\n")
	for _, line := range strings.Split(block, "\n") {
		for from, to := range ports {
			line = strings.ReplaceAll(line, fmt.Sprint(from), fmt.Sprint(to))
		}
		if strings.Contains(line, "demo --origin-only") && ports[8443] != 0 {
			// The origin's default address is in the binary, not the text.
			line = strings.Replace(line, "--origin-only", fmt.Sprintf("--origin-only --origin 127.0.0.1:%d", ports[8443]), 1)
		}
		script.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), "&") {
			switch {
			case strings.Contains(line, "--origin-only"):
				fmt.Fprintf(&script, "wait_port %d\n", pick(ports, 8443))
			case strings.Contains(line, " serve "):
				fmt.Fprintf(&script, "wait_port %d\n", pick(ports, 3128))
			default:
				t.Fatalf("the Quickstart starts %q in the background; teach this test what it listens on", line)
			}
		}
	}
	script.WriteString("echo QUICKSTART-DONE\n")

	out := new(syncBuffer)
	cmd := start(t, dir, script.String(), out)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the Quickstart failed: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("the Quickstart did not finish:\n%s", out.String())
	}
	got := out.String()
	for _, want := range []string{
		"wrote ca/ca.pem",
		"credgate.yaml: ok (gateway config;",
		"result:            allowed",
		`"Authorization": "Bearer sk_t…(29 chars)"`,
		`"credential_injected": true`,
		"QUICKSTART-DONE",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the Quickstart's output lacks %q:\n%s", want, got)
		}
	}
	if m := regexp.MustCompile(`(?m)^credgate: .*$`).FindString(got); m != "" {
		t.Errorf("a Quickstart command failed: %s", m)
	}
	// Followed inside a checkout, it leaves nothing git would add.
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(st)) != 0 {
		t.Errorf("the Quickstart left files git would add: %v\n%s", err, st)
	}
}

func pick(m map[int]int, p int) int {
	if q, ok := m[p]; ok {
		return q
	}
	return p
}
