package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoreWatchNotAFile replaces the watched policy file by things that
// are not a policy file, one after the other, with the real watcher
// running: each is rejected promptly with an error that says what the
// path is, the last good policy stays, and the next good file is picked
// up. Before, a named pipe (or a link to one) blocked the reload forever
// in read(2) with the store's lock held: no later reload, SIGHUP or Close
// (shutdown) returned, and a link to /dev/zero read until memory ran out.
func TestStoreWatchNotAFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, storePolicy(1))
	var rec reloads
	s := newTestStore(t, path, StoreOptions{OnReload: rec.record, Debounce: 20 * time.Millisecond, MaxCloseDelay: time.Millisecond})
	startWatch(t, s)
	first := s.Current()
	replace := func(make func(tmp string) error) {
		t.Helper()
		tmp := filepath.Join(dir, "next.tmp")
		if err := make(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		make func(tmp string) error
		want string
	}{
		{"a named pipe", func(tmp string) error { return syscall.Mkfifo(tmp, 0o600) }, "is a named pipe (FIFO), not a regular file"},
		{"a directory", func(tmp string) error { return os.Mkdir(tmp, 0o755) }, "is a directory, not a regular file"},
		{"a link to /dev/zero", func(tmp string) error { return os.Symlink("/dev/zero", tmp) }, "is a device, not a regular file"},
		{"a truncated file", func(tmp string) error { return os.WriteFile(tmp, []byte(storePolicy(3)[:40]), 0o600) }, "policy.yaml:3:1: invalid YAML"},
		{"an empty file", func(tmp string) error { return os.WriteFile(tmp, nil, 0o600) }, "the policy file is empty"},
	} {
		replace(c.make)
		// The removal before the rename may be seen (and reported) too.
		waitFor(t, c.name+" to be rejected", func() bool {
			errs := rec.snapshot()
			return len(errs) > 0 && errs[len(errs)-1] != nil && strings.Contains(errs[len(errs)-1].Error(), c.want)
		})
		if s.Current() != first {
			t.Fatalf("%s replaced the last good policy", c.name)
		}
		// A SIGHUP reload returns too (it waited on the lock before).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.Reload(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: Reload = %v, want %q", c.name, err, c.want)
		}
	}
	replace(func(tmp string) error { return os.WriteFile(tmp, []byte(storePolicy(4)), 0o600) })
	waitFor(t, "the next good policy to load", func() bool { return s.Current().Stats().Rules == 4 })
}

// TestNewStoreNotAFile: at start, a policy path that is not a regular
// file is refused at once too (a named pipe blocked start-up).
func TestNewStoreNotAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "policy.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(context.Background(), fifo, StoreOptions{Logger: quietLogger()})
	if err == nil {
		s.Close()
		t.Fatal("NewStore accepted a named pipe")
	}
	if !strings.Contains(err.Error(), "is a named pipe (FIFO), not a regular file") {
		t.Fatalf("NewStore = %v", err)
	}
}

// TestStoreFileInForce: FileInForce (credgate_policy_last_reload_successful)
// is false exactly while the file, as last read, is not the policy in
// force: after a rejected or unreadable file, and again for the same bad
// file seen twice, until a good file loads or the file returns to the
// policy in force (which is not a reload). Before, only a counter told of
// failures, rising once per bad file.
func TestStoreFileInForce(t *testing.T) {
	const missing = ""
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{MaxCloseDelay: time.Hour})
	if !s.FileInForce() {
		t.Fatal("FileInForce false after the start-up load")
	}
	for i, step := range []struct {
		content string
		want    bool
	}{
		{brokenPolicy, false},
		{brokenPolicy, false},  // the same bad file: not reported again, still bad
		{storePolicy(1), true}, // back to the policy in force
		{missing, false},
		{missing, false},
		{"rules: 5\n", false},
		{storePolicy(2), true}, // a new good policy
		{storePolicy(2), true},
	} {
		if step.content == missing {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		} else {
			writeFile(t, path, step.content)
		}
		_, _ = s.reload(context.Background(), false)
		if got := s.FileInForce(); got != step.want {
			t.Fatalf("step %d: FileInForce = %v, want %v", i, got, step.want)
		}
	}
	// SIGHUP with a bad file: false; then good: true.
	writeFile(t, path, brokenPolicy)
	if s.Reload(context.Background()) == nil || s.FileInForce() {
		t.Fatal("SIGHUP with a bad file: FileInForce still true")
	}
	writeFile(t, path, storePolicy(3))
	if err := s.Reload(context.Background()); err != nil || !s.FileInForce() {
		t.Fatalf("SIGHUP with a good file: %v, FileInForce %v", err, s.FileInForce())
	}
}
