package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/credgate/credgate/gateway/internal/h1"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/backoff"
)

// listenerCipherSuites are the TLS 1.2 cipher suites every listener of the
// gateway (interception, tls_listen, an HTTPS admin listener) accepts:
// ECDHE key exchange with an AEAD cipher, for ECDSA and RSA certificates.
// crypto/tls's defaults add the ECDHE CBC suites with HMAC-SHA1, which are
// open to padding-oracle timing attacks (Lucky Thirteen) on exactly what
// a gateway carries, a secret repeated across connections, and which no
// client that still has TLS 1.2 needs. TLS 1.3's suites are all AEAD and
// not configurable.
var listenerCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serveClients accepts the connections of a proxy listener (listen, or
// tls_listen's TLS listener; name says which) and serves each on its own
// goroutine with the h1 server and serveProxy, as the intercepted side of
// tunnels is served: one HTTP/1.1 server reads every client request,
// frames every body the same way and answers (and audits) every request
// it cannot read with malformed_request. It returns nil once shutdown has
// closed ln or ctx is done, or the error of Accept on a listener closed
// otherwise.
//
// Every other Accept error is waited out and retried, as net/http's
// server does with temporary ones, with a backoff from 5 ms doubling to
// 1 s: out of file descriptors (EMFILE, ENFILE), and the errors accept(2)
// says a server must treat as transient (ENOBUFS, ENOMEM, EPROTO,
// ENETDOWN, EPERM from a firewall...), which Go does not call temporary
// and which stopped the gateway before. Each is counted
// (credgate_accept_errors_total) and logged at most once per
// clientLogEvery.
//
// pp, when not nil, is the listener's PROXY protocol: each connection's
// header is read on its own goroutine (acceptProxyHeader), never in the
// accept loop.
func (g *Gateway) serveClients(ctx context.Context, name string, ln net.Listener, pp *proxyHeaders) error {
	failures := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				if g.draining.Load() {
					return nil
				}
				return err
			}
			failures++
			g.metrics.acceptErrors.WithLabelValues(name).Inc()
			if ok, held := g.clientLog.Allow("accept_error:" + name); ok {
				g.log.Warn("accepting a client connection failed; retrying with backoff", slog.String("listener", name), slog.Any("error", err),
					slog.Int("failures_in_a_row", failures), slog.Int("similar_errors_not_logged", held))
			}
			if backoff.Wait(ctx, acceptBackoff, acceptBackoffLimit, failures) != nil {
				return nil // shutting down
			}
			continue
		}
		failures = 0
		go g.serveClient(c, pp)
	}
}

// The backoff between failed accepts (net/http's server's).
const (
	acceptBackoff      = 5 * time.Millisecond
	acceptBackoffLimit = time.Second
)

// serveClient serves one proxy listener connection: after its PROXY
// header when pp is set, a TLS one after its handshake, each bounded by
// read_header_timeout (net/http's bound too).
func (g *Gateway) serveClient(c net.Conn, pp *proxyHeaders) {
	ctx := g.baseCtx
	var via netip.Addr
	if pp != nil {
		var ok bool
		if c, via, ok = g.acceptProxyHeader(c, pp); !ok {
			return
		}
		if via.IsValid() {
			ctx = context.WithValue(ctx, viaKey{}, via)
		}
		if pp.tls != nil {
			c = tls.Server(c, pp.tls)
		}
	}
	if tc, ok := c.(*tls.Conn); ok {
		start := time.Now()
		if err := handshake(tc, g.cfg.Limits.ReadHeaderTimeout.D()); err != nil {
			ev := identity.Evidence{Via: via}
			if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); perr == nil {
				ev.Source, ev.SourceText = ap, ap.Addr().Unmap().String()
			}
			g.refuseHandshake(start, ev, identity.Workload{Source: ev.Source.Addr().Unmap()}, target{}, "tls_listen", err)
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
	g.h1Srv.Serve(ctx, hc, g.proxy)
}

// handshake runs c's TLS handshake with a client within timeout (0: no
// limit), as a deadline on the connection, reads and writes both, which it
// clears afterwards. HandshakeContext with a context.WithTimeout bounds
// it the same way (its expiry closes the connection), but makes a timer,
// the context, two channels and a goroutine waiting on them for every
// connection; the gateway's base context, the parent it had, is never
// cancelled (New: context.WithoutCancel).
func handshake(c *tls.Conn, timeout time.Duration) error {
	if timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(timeout))
	}
	err := c.Handshake()
	if timeout > 0 && err == nil {
		_ = c.SetDeadline(time.Time{})
	}
	return err
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
