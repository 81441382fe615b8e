//go:build unix

package freeport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// claim takes the lock of port p, or reports that another holder has it.
// The lock lives on a raw descriptor that is never closed (an *os.File
// would be closed by its finalizer): the kernel drops it when the process
// exits, however it exits.
func claim(p int) (bool, error) {
	dir := filepath.Join(os.TempDir(), "credgate-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return false, fmt.Errorf("freeport: %w", err)
	}
	fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(p)), syscall.O_RDONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o666)
	if err != nil {
		return false, fmt.Errorf("freeport: lock file: %w", err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = syscall.Close(fd)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("freeport: lock port %d: %w", p, err)
	}
	return true, nil
}
