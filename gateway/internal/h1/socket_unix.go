//go:build unix

package h1

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// rawConn returns the socket under tc (under its TLS layer, for a
// *tls.Conn), or nil when there is none to wait on: the connection under
// the TLS layer must implement syscall.Conn, which the gateway's does only
// when no byte of the client's is buffered above the socket.
func rawConn(tc Conn) syscall.RawConn {
	var nc net.Conn = tc
	if t, ok := tc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// socketReadable reports whether the socket fd has something to read (a
// byte, the end of the stream, an error), looking without reading it and
// without blocking.
func socketReadable(fd uintptr) bool {
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
