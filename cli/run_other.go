//go:build !unix

package cli

import (
	"os"
	"syscall"
)

// forwardedSignals are the signals credgate run passes on to the command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
