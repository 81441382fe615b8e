//go:build !linux

package runrelay

import (
	"errors"
	"net"
)

// DescendantsSupported reports whether Config.Descendants can admit a
// client: only Linux is asked which process holds a TCP socket.
const DescendantsSupported = false

// process names a process (on Linux by its id and start time).
type process struct{ pid int }

// commandProcess names pid.
func commandProcess(pid int) process { return process{pid: pid} }

// commandPeer is not known on this system: clients are admitted by the
// secret only.
func commandPeer(net.Conn, process) error {
	return errors.New("the process holding a TCP connection is known on Linux only")
}
