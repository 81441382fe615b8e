//go:build !unix

package socket

import (
	"net"
	"syscall"
)

// Raw returns nil: without a peek at the socket (socket_unix.go) callers
// read instead.
func Raw(net.Conn) syscall.RawConn { return nil }

// Readable is not called where Raw returns nil.
func Readable(uintptr) bool { return true }
