package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
)

// errTunnelSNI ends the client's side of a spliced tunnel whose TLS
// ClientHello names another host than the CONNECT target, or cannot be
// read.
var errTunnelSNI = errors.New("the tunnel's TLS ClientHello names another host than the CONNECT target")

// errHelloRead stops the handshake tunnelHello runs once it has the
// ClientHello.
var errHelloRead = errors.New("ClientHello read")

// tunnelSNI is the lc.frames of a spliced tunnel to dest (invariant 1:
// the CONNECT target and the TLS SNI agree). A server behind a shared
// address (a CDN, a multi-tenant load balancer) routes by the SNI, so a
// tunnel allowed to one host whose ClientHello names another reaches
// that other host. When the client's first bytes are a TLS handshake
// record, its ClientHello is read whole (within
// limits.read_header_timeout) before any byte goes on; an SNI naming
// another host than dest (any host name, for an IP literal), or a ClientHello
// crypto/tls cannot read (or that is not whole within the timeout),
// closes the tunnel (sni_mismatch) with nothing of it sent; a client
// that leaves during its ClientHello ends the tunnel as it would. A ClientHello without SNI, and bytes that are not TLS
// (another protocol, or a server that speaks first), pass unread.
func (g *Gateway) tunnelSNI(lc *longConn, client net.Conn, dest target, source string) func(io.Reader) io.Reader {
	return func(r io.Reader) io.Reader {
		return &helloGate{r: r, check: func() (io.Reader, error) {
			next, sni, err := tunnelHello(client, g.cfg.Limits.ReadHeaderTimeout.D())
			if err == nil && (sni == "" || sni == dest.host) {
				return next, nil
			}
			if err != nil && (lc.endReason() != "" || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
				// The client left, or the tunnel was closed (a kill
				// switch), during the ClientHello: it ends, nothing of
				// the ClientHello sent, as no refusal.
				return nil, err
			}
			g.metrics.refusals.WithLabelValues(codeSNIMismatch).Inc()
			attrs := []slog.Attr{slog.String("connect", dest.hostPort()), slog.String("source", source)}
			if err != nil {
				attrs = append(attrs, slog.String("error", err.Error()))
			} else {
				attrs = append(attrs, slog.String("sni", sni))
			}
			g.logClientRefusal(g.baseCtx, codeSNIMismatch, "closed a tunnel: its TLS ClientHello names another host than the CONNECT target, or could not be read", attrs...)
			lc.close(closedSNIMismatch)
			return nil, errTunnelSNI
		}}
	}
}

// helloGate runs check before the first byte is read through it, and
// then reads what check returned.
type helloGate struct {
	r     io.Reader
	check func() (io.Reader, error)
}

func (h *helloGate) Read(p []byte) (int, error) {
	if h.check != nil {
		r, err := h.check()
		h.check = nil
		if err != nil {
			h.r = errReader{err}
			return 0, err
		}
		h.r = r
	}
	return h.r.Read(p)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// tunnelHello reads the client's first bytes and, when they begin a TLS
// handshake record, the whole ClientHello (crypto/tls parses it, with its
// limits), within timeout. It returns a reader of everything the client
// sent, the bytes read included, and the SNI in lower case without a
// trailing dot ("" when there is none, or when the bytes are not TLS).
func tunnelHello(client net.Conn, timeout time.Duration) (io.Reader, string, error) {
	first := make([]byte, 512)
	n, err := client.Read(first)
	if n == 0 {
		if err != nil {
			return errReader{err}, "", nil
		}
		return client, "", nil
	}
	first = first[:n]
	if first[0] != 0x16 { // not a TLS handshake record
		return io.MultiReader(bytes.NewReader(first), client), "", nil
	}
	_ = client.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = client.SetReadDeadline(time.Time{}) }()
	seen := bytes.NewBuffer(first)
	src := io.MultiReader(bytes.NewReader(first), io.TeeReader(client, seen))
	var sni string
	got := false
	err = tls.Server(helloConn{Conn: client, r: src}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni, got = h.ServerName, true
			return nil, errHelloRead
		},
	}).Handshake()
	if !got {
		return nil, "", err
	}
	return io.MultiReader(seen, client), strings.ToLower(strings.TrimSuffix(sni, ".")), nil
}

// helloConn is the client connection as tunnelHello's handshake sees it:
// it reads through r (recording what it reads) and writes nothing (the
// alert crypto/tls sends on the aborted handshake never reaches the
// client).
type helloConn struct {
	net.Conn
	r io.Reader
}

func (c helloConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c helloConn) Write(p []byte) (int, error) { return len(p), nil }
func (c helloConn) Close() error                { return nil }
