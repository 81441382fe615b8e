//go:build !unix

package h1

import "syscall"

// rawConn returns nil: without a peek at the socket (socket_unix.go) a
// handed-off connection waits in its read.
func rawConn(Conn) syscall.RawConn { return nil }

// socketReadable is not called where rawConn returns nil.
func socketReadable(uintptr) bool { return true }
