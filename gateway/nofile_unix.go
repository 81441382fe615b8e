//go:build unix

package gateway

import "syscall"

// fileLimit is the soft RLIMIT_NOFILE: the most file descriptors the
// process may hold (Go raises it to the hard limit at start). An unlimited one reads as the largest number.
func fileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
