//go:build !linux

package runrelay

import (
	"errors"
	"net"
)

// DescendantsSupported reports whether Config.Descendants can admit a
// client: only Linux is asked which process holds a TCP socket.
const DescendantsSupported = false

// commandPeer is not known on this system: clients are admitted by the
// secret only.
func commandPeer(net.Conn, int) error {
	return errors.New("the process holding a TCP connection is known on Linux only")
}
