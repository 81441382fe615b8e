// Package atomicfile replaces and renames files durably: after Write or
// Rename returns, a crash or power loss leaves the old content or the
// new one under the name, never part of one and never neither. A rename
// alone is atomic but not durable: until the directory holding the name
// is synced, the file system may come back with the old entry (or, for a
// new name, none) even though the call returned. It exists so that every
// place credgate writes a file by temp+rename (the kill switch's state
// file, the audit log's rotation, the tools' generated files) does the
// syncs once, in one place; a test fails on os.Rename or os.CreateTemp
// anywhere else.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ops are the file system calls whose order makes a write durable; tests
// record them (no global state: Write passes the real ones).
type ops struct {
	syncFile func(*os.File) error
	rename   func(oldpath, newpath string) error
	syncDir  func(dir string) error
}

var real = ops{syncFile: (*os.File).Sync, rename: os.Rename, syncDir: SyncDir}

// Write replaces path with data, mode perm: a temporary file in the same
// directory is written, synced, closed and renamed over path, and the
// directory is then synced. On failure path is left as it was and the
// temporary file is removed.
func Write(path string, data []byte, perm fs.FileMode) error {
	return write(real, path, data, perm)
}

func write(o ops, path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	merr := tmp.Chmod(perm)
	serr := o.syncFile(tmp)
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := o.rename(name, path); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := o.syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: write %s: the file is in place but its directory was not synced: %w", path, err)
	}
	return nil
}

// Rename renames oldpath to newpath (a file or a directory) and syncs
// the directory that holds newpath, and oldpath's when it is another one.
func Rename(oldpath, newpath string) error {
	return rename(real, oldpath, newpath)
}

func rename(o ops, oldpath, newpath string) error {
	if err := o.rename(oldpath, newpath); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	dirs := []string{filepath.Dir(newpath)}
	if d := filepath.Dir(oldpath); d != dirs[0] {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := o.syncDir(d); err != nil {
			return fmt.Errorf("atomicfile: renamed %s to %s but its directory was not synced: %w", oldpath, newpath, err)
		}
	}
	return nil
}

// SyncDir syncs the directory dir, so that the names created, renamed or
// removed in it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
