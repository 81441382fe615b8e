//go:build unix

package socket

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// Raw returns the socket under c (under its TLS layer, for a *tls.Conn),
// or nil when there is none to look at: the connection under the TLS
// layer must implement syscall.Conn (the gateway's client connections do
// only when no byte of the client's is buffered above the socket).
func Raw(c net.Conn) syscall.RawConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Readable reports whether the socket fd has something to read (a byte,
// the end of the stream, an error), looking without reading it and
// without blocking. Given to syscall.RawConn.Read, it makes the read
// wait until the socket is readable.
func Readable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
			return false
		}
		return true
	}
}
