//go:build unix

package cli

import (
	"os"
	"syscall"
)

// forwardedSignals are the signals credgate run passes on to the command
// and does not act on itself. Not caught, SIGQUIT would end credgate run
// with a stack dump (the command left running, its token not revoked, the
// private directory left behind), and SIGUSR1, SIGUSR2 and SIGALRM would
// be dropped by the Go runtime, never reaching the command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM}
