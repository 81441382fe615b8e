// Package writable tells whether the gateway's user can write a file or
// create files in a directory, without writing anything: credgate
// validate and serve check the files the gateway will write (the kill
// switch's state file, the audit log) before start-up needs them. It
// exists so that the stat, the "is it a directory" distinction and the
// access(2) call are written once; each caller words the error for its
// own setting.
package writable

import (
	"errors"
	"fmt"
	"os"
)

// ErrNotDir is wrapped by Dir's error when the path exists but is not a
// directory. (A path below a file is stat(2)'s error, syscall.ENOTDIR.)
var ErrNotDir = errors.New("not a directory")

// ErrIsDir is wrapped by File's error when the path is a directory.
var ErrIsDir = errors.New("is a directory")

// ErrDenied is wrapped by Dir's and File's errors when the path exists
// but the process may not write it.
var ErrDenied = errors.New("not writable by this process")

// Dir returns nil when dir is an existing directory in which the process
// may create, rename and remove files (write and search permission, as
// access(2) answers for the real uid: root is refused only by a read-only
// file system). Otherwise its error wraps fs.ErrNotExist when dir does not
// exist, ErrNotDir when it is not a directory, ErrDenied when it may not
// be written, or the error of stat(2).
func Dir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s: %w", dir, ErrNotDir)
	}
	if err := access(dir, true); err != nil {
		return fmt.Errorf("%s: %w (%w)", dir, ErrDenied, err)
	}
	return nil
}

// File returns nil when path is an existing file (not a directory) that
// the process may write. Otherwise its error wraps fs.ErrNotExist when
// path does not exist, ErrIsDir when it is a directory, ErrDenied when it
// may not be written, or the error of stat(2). It says nothing about
// path's directory: Dir does.
func File(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s: %w", path, ErrIsDir)
	}
	if err := access(path, false); err != nil {
		return fmt.Errorf("%s: %w (%w)", path, ErrDenied, err)
	}
	return nil
}
