//go:build unix

package writable

import "syscall"

// access modes of access(2).
const (
	wOK = 0x2
	xOK = 0x1
)

// access asks access(2) whether the process may write path (and, for a
// directory, search it).
func access(path string, dir bool) error {
	mode := uint32(wOK)
	if dir {
		mode |= xOK
	}
	return syscall.Access(path, mode)
}
