package writable

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDirAndFile runs Dir and File over each kind of path the gateway
// may be given: each answer is nil or wraps the one error its caller
// words (a missing path, a file where a directory is wanted and the
// reverse, a path below a file, and a mode that refuses writing).
func TestDirAndFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "dir")
	file := filepath.Join(root, "file")
	readOnlyDir := filepath.Join(root, "ro-dir")
	readOnlyFile := filepath.Join(root, "ro-file")
	for _, d := range []string{dir, readOnlyDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{file, readOnlyFile} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(readOnlyDir, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readOnlyFile, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(readOnlyDir, 0o755) })

	// root passes access(2)'s mode checks: a read-only mode refuses
	// only another user.
	asRoot := os.Geteuid() == 0
	tests := []struct {
		name     string
		check    func(string) error
		path     string
		want     error // nil, or what the error wraps
		modeOnly bool  // refused by the mode bits, which root passes
	}{
		{"Dir: a writable directory", Dir, dir, nil, false},
		{"Dir: missing", Dir, filepath.Join(root, "absent"), fs.ErrNotExist, false},
		{"Dir: a file", Dir, file, ErrNotDir, false},
		{"Dir: below a file", Dir, filepath.Join(file, "sub"), syscall.ENOTDIR, false},
		{"Dir: read-only", Dir, readOnlyDir, ErrDenied, true},
		{"File: a writable file", File, file, nil, false},
		{"File: missing", File, filepath.Join(root, "absent"), fs.ErrNotExist, false},
		{"File: a directory", File, dir, ErrIsDir, false},
		{"File: below a file", File, filepath.Join(file, "sub"), syscall.ENOTDIR, false},
		{"File: read-only", File, readOnlyFile, ErrDenied, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.modeOnly && asRoot {
				t.Skip("running as root, which access(2) lets write whatever the mode")
			}
			err := tt.check(tt.path)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("%s: %v, want nil", tt.path, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("%s: %v, want an error wrapping %q", tt.path, err, tt.want)
			}
			for _, other := range []error{fs.ErrNotExist, ErrNotDir, ErrIsDir, ErrDenied} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("%s: %v also wraps %q", tt.path, err, other)
				}
			}
		})
	}
}

// childEnv names the directory TestDeniedChild checks; only
// TestDeniedAsAnotherUser sets it.
const childEnv = "CREDGATE_WRITABLE_CHILD_DIR"

// TestDeniedAsAnotherUser covers TestDirAndFile's read-only rows when
// the tests run as root (as in a container): this test binary runs them
// again as the user nobody (uid 65534), whom the mode bits refuse.
func TestDeniedAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: TestDirAndFile's read-only rows ran")
	}
	// Everything nobody opens is in a directory anyone may search, the
	// test binary included (the build directory is root's alone).
	top, err := os.MkdirTemp("", "writable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(top, "writable.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"ro-dir", 0o555}, {"open-dir", 0o777}} {
		p := filepath.Join(top, d.name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"ro-file", 0o444}, {"open-file", 0o666}} {
		p := filepath.Join(top, f.name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-test.run=^TestDeniedChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+top)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestDeniedChild") {
		t.Fatalf("as nobody, TestDeniedChild did not pass:\n%s", out)
	}
}

// TestDeniedChild is TestDeniedAsAnotherUser's child, run as nobody.
func TestDeniedChild(t *testing.T) {
	top := os.Getenv(childEnv)
	if top == "" {
		t.Skip("run by TestDeniedAsAnotherUser")
	}
	tests := []struct {
		name  string
		check func(string) error
		path  string
		want  error
	}{
		{"Dir: read-only", Dir, filepath.Join(top, "ro-dir"), ErrDenied},
		{"Dir: writable by all", Dir, filepath.Join(top, "open-dir"), nil},
		{"File: read-only", File, filepath.Join(top, "ro-file"), ErrDenied},
		{"File: writable by all", File, filepath.Join(top, "open-file"), nil},
	}
	for _, tt := range tests {
		err := tt.check(tt.path)
		if (tt.want == nil) != (err == nil) || !errors.Is(err, tt.want) {
			t.Errorf("%s: %s: %v, want %v", tt.name, tt.path, err, tt.want)
		}
	}
}
