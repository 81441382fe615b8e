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

// processSwitches returns how many times this process's threads have
// been switched off a CPU (voluntary and involuntary context switches):
// per request at a low rate, it counts the wake-ups a request costs.
func processSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}
