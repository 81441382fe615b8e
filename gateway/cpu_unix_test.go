//go:build unix

package gateway

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) this process has used,
// for benchmarks that report CPU per operation: on a shared machine it
// moves far less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
