//go:build linux

package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dropFromPageCache writes the file at path to disk and asks the kernel
// to drop its pages from the page cache, so that a process started from
// it maps its pages as a freshly deployed binary's are: read from disk
// on demand. Without it, how many pages a start maps depends on how the
// page cache happens to hold the file (a binary as the linker wrote it
// mapped up to 5 MiB more than the same bytes read from disk or copied:
// large folios, docs/performance.md), which varies from build to build
// of the same code. Pages a running process maps stay.
func dropFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("drop %s from the page cache: sync: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}
