package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credgate/credgate/gateway/internal/h1"
)

// serveClients accepts the connections of a proxy listener (listen, or
// tls_listen's TLS listener) and serves each on its own goroutine with
// the h1 server and serveProxy, as the intercepted side of tunnels is
// served: one HTTP/1.1 server reads every client request, frames every
// body the same way and answers (and audits) every request it cannot
// read with malformed_request. It returns nil once shutdown has closed
// ln, or the error that stopped Accept.
func (g *Gateway) serveClients(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.draining.Load() && errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http's server does.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.log.Warn("accepting a client connection failed; retrying", slog.String("listener", ln.Addr().String()), slog.Any("error", err), slog.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go g.serveClient(c)
	}
}

// serveClient serves one proxy listener connection: a TLS one after its
// handshake, bounded by read_header_timeout (net/http's bound too).
func (g *Gateway) serveClient(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(g.baseCtx, g.cfg.Limits.ReadHeaderTimeout.D())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			g.log.Debug("TLS handshake with a client failed", slog.String("remote", c.RemoteAddr().String()), slog.Any("error", err))
			_ = c.Close()
			return
		}
	}
	hc, ok := c.(h1.Conn)
	if !ok {
		// Cannot happen: accepted connections are countedConns or
		// *tls.Conns over them.
		g.log.Error("a client connection without CloseWrite; closed", slog.String("remote", c.RemoteAddr().String()))
		_ = c.Close()
		return
	}
	g.h1Srv.Serve(g.baseCtx, hc, g.proxy)
}

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

// SyscallConn is the socket, for the h1 server's wait for the next
// request on an idle connection (it waits for the socket to become
// readable, without reading).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

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
