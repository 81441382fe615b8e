package gateway

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// countingListener counts open client connections in a gauge. Each
// accepted connection is wrapped so that its first Close decrements the
// gauge, whoever closes it (the HTTP server, a tunnel, the intercepting
// server after a hijack).
type countingListener struct {
	net.Listener
	open interface{ Add(float64) }
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

// countedConn decrements its gauge once, on the first Close.
type countedConn struct {
	net.Conn
	open   interface{ Add(float64) }
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite half-closes when the underlying connection can.
func (c *countedConn) CloseWrite() error { return closeWrite(c.Conn) }

// NetConn returns the wrapped connection.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// connListener hands connections the gateway accepted elsewhere (the
// intercepted side of CONNECT tunnels) to an http.Server, so that one
// server with its timeouts, header limits, HTTP/2 and graceful Shutdown
// serves every intercepted connection.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// errListenerClosed is returned by Accept and hand after Close.
var errListenerClosed = errors.New("gateway: intercepting listener closed")

// hand passes c to the server. It fails when the listener is closed (the
// gateway is shutting down); the caller then closes c.
func (l *connListener) hand(c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return errListenerClosed
	}
}

// Accept implements net.Listener.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *connListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

// Addr implements net.Listener.
func (l *connListener) Addr() net.Addr { return l.addr }
