//go:build unix

package cfgfiletest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Fifo makes the named pipe dir/name. At the test's end a writer opens
// and closes it, so a reader that a broken read left blocked in open(2)
// returns.
func Fifo(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	return p
}

// DevZero makes dir/name a symbolic link to /dev/zero, which a reader
// without a bound reads until memory runs out.
func DevZero(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Symlink("/dev/zero", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Sparse makes dir/name a file of n zero bytes that takes no disk.
func Sparse(t testing.TB, dir, name string, n int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(n); err != nil {
		t.Fatal(err)
	}
	return p
}
