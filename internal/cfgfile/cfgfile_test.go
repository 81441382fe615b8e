package cfgfile

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRead is the class of paths a loader must refuse rather than read:
// each returns at once with an error naming what the path is, and a
// regular file (or a link to one) is read whole.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte("default: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifolink.yaml")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, 101), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		isErr error
		want  string
	}{
		{file, nil, ""},
		{link, nil, ""},
		{dir, ErrNotRegular, "is a directory, not a regular file; name a regular file"},
		{fifo, ErrNotRegular, "is a named pipe (FIFO)"},
		{fifoLink, ErrNotRegular, "is a named pipe (FIFO)"},
		{zero, ErrNotRegular, "is a device"},
		{sock, nil, "no such device or address"}, // open(2) refuses a socket: ENXIO
		{big, ErrTooLarge, "holds 101 bytes, more than the 100"},
		{filepath.Join(dir, "missing.yaml"), fs.ErrNotExist, "no such file"},
	} {
		data, err := read(context.Background(), c.path, 100, "a test file")
		if c.want == "" {
			if err != nil || string(data) != "default: deny\n" {
				t.Errorf("%s: %q, %v", c.path, data, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || c.isErr != nil && !errors.Is(err, c.isErr) {
			t.Errorf("%s: got %v, want %q (%v)", c.path, err, c.want, c.isErr)
		}
	}
}

// TestReadContext: a read for a waiting request stops when its context
// is done, and reads a file of several chunks whole (chunk is 32 KiB).
func TestReadContext(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key.pem")
	want := strings.Repeat("k", MaxSecretBytes-1)
	if err := os.WriteFile(file, []byte(want), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecretContext(t.Context(), file); err != nil || string(got) != want {
		t.Fatalf("ReadSecretContext: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ReadContext(ctx, file); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), file) {
		t.Errorf("ReadContext with a done context: %v; want context.Canceled naming the file", err)
	}
}
