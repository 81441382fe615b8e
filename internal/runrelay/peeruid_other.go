//go:build !linux

package runrelay

import (
	"errors"
	"net"
)

// SameUserSupported reports whether Config.SameUser can admit a client:
// only Linux is asked who owns a TCP socket.
const SameUserSupported = false

// peerUID is not known on this system: clients are admitted by the
// secret only.
func peerUID(net.Conn) (int, error) {
	return 0, errors.New("the owner of a TCP connection is known on Linux only")
}
