package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
)

// ProxyProtocolListeners configures the PROXY protocol (HAProxy's v1 text
// and v2 binary header) on each proxy listener: a TCP load balancer in
// front of the gateway (AWS NLB, HAProxy, Envoy, a GCP or Azure load
// balancer) puts one before the client's bytes to say which client
// address the connection comes from. The admin listener reads none: its
// probes and scrapes come from the cluster, not through a load balancer.
type ProxyProtocolListeners struct {
	// Listen is the plain proxy listener's setting.
	Listen ProxyProtocol `yaml:"listen"`
	// TLSListen is tls_listen's setting (the header comes before the
	// TLS handshake).
	TLSListen ProxyProtocol `yaml:"tls_listen"`
}

// ProxyProtocol is the PROXY protocol setting of one proxy listener
// (docs/config.md#proxy_protocol).
type ProxyProtocol struct {
	// Trusted are the CIDRs of the load balancers (their addresses as
	// the gateway sees them) whose PROXY header is read: the address in
	// it becomes the connection's source for identity (the cidrs
	// factor), audit, logs and connection limits. A PROXY header from any
	// other peer is refused (proxy_protocol_untrusted) and never read as
	// the request. Empty: the listener reads no PROXY header.
	Trusted []string `yaml:"trusted"`
	// Required refuses a connection from a trusted peer without a PROXY
	// header (proxy_protocol_missing): set it when every connection from
	// those addresses comes through the load balancer.
	Required bool `yaml:"required"`
}

// Reason codes of connections refused for their PROXY header.
const (
	// codeProxyProtocolUntrusted: a PROXY header from a peer outside the
	// listener's proxy_protocol.trusted.
	codeProxyProtocolUntrusted = "proxy_protocol_untrusted"
	// codeProxyProtocolMissing: no PROXY header from a trusted peer of a
	// listener whose proxy_protocol.required is set.
	codeProxyProtocolMissing = "proxy_protocol_missing"
	// codeProxyProtocolInvalid: a PROXY header that does not parse, is
	// too long, names no IP address (AF_UNIX, UDP, v2 PROXY with
	// UNSPEC) or did not arrive whole within limits.read_header_timeout.
	codeProxyProtocolInvalid = "proxy_protocol_invalid"
)

// prefixes parses Trusted; key names the setting in errors
// ("proxy_protocol.listen.trusted").
func (p ProxyProtocol) prefixes(key string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for i, v := range p.Trusted {
		pfx, err := netip.ParsePrefix(v)
		at := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case err != nil && !strings.Contains(v, "/"):
			if a, aerr := netip.ParseAddr(v); aerr == nil {
				errs = append(errs, fmt.Errorf("%s: %q has no prefix length; write %s/%d for a single address", at, v, v, a.BitLen()))
			} else {
				errs = append(errs, fmt.Errorf("%s: %q is not a CIDR; write the load balancer's addresses like 10.0.0.0/24", at, v))
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a CIDR; write the load balancer's addresses like 10.0.0.0/24", at, v))
		case pfx.Masked() != pfx:
			errs = append(errs, fmt.Errorf("%s: %q has bits set after the prefix length; did you mean %s?", at, v, pfx.Masked()))
		case pfx.Bits() == 0:
			errs = append(errs, fmt.Errorf("%s: %q trusts every peer, so any client could write its own PROXY header and choose the source address the cidrs factor judges; list only the load balancers' addresses", at, v))
		case pfx.Addr().Is4In6():
			errs = append(errs, fmt.Errorf("%s: %q is an IPv4-mapped IPv6 prefix; peers are matched as IPv4, so write an IPv4 CIDR", at, v))
		default:
			out = append(out, pfx)
		}
	}
	if p.Required && len(p.Trusted) == 0 {
		errs = append(errs, fmt.Errorf("%s: required is set but trusted is empty; list the load balancers' CIDRs in trusted, or remove required", strings.TrimSuffix(key, ".trusted")))
	}
	return out, errs
}

// check returns the problems of both listeners' settings, each naming its
// key.
func (p ProxyProtocolListeners) check(tlsListen bool) []error {
	_, errs := p.Listen.prefixes("proxy_protocol.listen.trusted")
	_, errs2 := p.TLSListen.prefixes("proxy_protocol.tls_listen.trusted")
	errs = append(errs, errs2...)
	if !tlsListen && len(p.TLSListen.Trusted) > 0 {
		errs = append(errs, errors.New("proxy_protocol.tls_listen: is set but tls_listen is not; set tls_listen or remove proxy_protocol.tls_listen"))
	}
	return errs
}

// proxyHeaders is one proxy listener's PROXY protocol in force: whom it
// trusts, and (on tls_listen) the TLS configuration the connection gets
// after its header.
type proxyHeaders struct {
	listener string
	trusted  []netip.Prefix
	required bool
	// tls is tls_listen's configuration; nil on listen.
	tls *tls.Config
	// refusals answer a connection over max_connections_per_source, which
	// is counted once its source is known.
	refusals *connRefusals
}

// newProxyHeaders is the setting p of listener in force, nil when it
// reads no header.
func newProxyHeaders(listener string, p ProxyProtocol) (*proxyHeaders, error) {
	pfx, errs := p.prefixes("proxy_protocol." + listener + ".trusted")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(pfx) == 0 {
		return nil, nil
	}
	return &proxyHeaders{listener: listener, trusted: pfx, required: p.Required}, nil
}

func (p *proxyHeaders) trusts(a netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// proxyHeaderBuffer is the read buffer of the header: a v1 header is at
// most 107 bytes, a v2 one 16 and its address block (TLVs are read
// through it, at most proxyproto.MaxV2HeaderSize). What it holds beyond
// the header is the client's first bytes, read from it first.
const proxyHeaderBuffer = 256

// errProxyHeaderIncomplete: the connection ended or its deadline passed
// inside a PROXY header.
var errProxyHeaderIncomplete = errors.New("the PROXY header did not arrive whole within limits.read_header_timeout")

// acceptProxyHeader reads c's PROXY header, if any, under p within
// limits.read_header_timeout, and returns the connection to serve: its
// RemoteAddr is the header's source address when a trusted peer sent one
// (the peer's otherwise), its reads start with the bytes after the
// header. ok is false when the connection was refused (audited, logged
// and closed) or ended before a byte. The connection's
// max_connections_per_source admission is made here, against that
// source.
func (g *Gateway) acceptProxyHeader(c net.Conn, p *proxyHeaders) (_ net.Conn, via netip.Addr, ok bool) {
	start := time.Now()
	peer := netip.AddrPortFrom(sourceKey(c.RemoteAddr()), tcpPort(c.RemoteAddr()))
	if timeout := g.cfg.Limits.ReadHeaderTimeout.D(); timeout > 0 {
		_ = c.SetReadDeadline(start.Add(timeout))
	}
	br := bufio.NewReaderSize(c, proxyHeaderBuffer)
	if _, err := br.Peek(1); err != nil {
		// Closed or silent before a byte: it asked nothing (as a client
		// that connects and sends nothing to the h1 server).
		_ = c.Close()
		return nil, via, false
	}
	trusted := p.trusts(peer.Addr())
	hsrc, local, err := readProxyHeader(br, trusted)
	_ = c.SetReadDeadline(time.Time{})
	src := peer
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol) && trusted && p.required:
		g.refuseProxyHeader(start, p, peer, codeProxyProtocolMissing,
			fmt.Sprintf("connection refused: no PROXY header from %s, a load balancer in proxy_protocol.%s.trusted, and proxy_protocol.%s.required is set; configure the load balancer to send one (HAProxy send-proxy-v2, AWS NLB proxy protocol v2), or unset required", peer.Addr(), p.listener, p.listener), nil)
		_ = c.Close()
		return nil, via, false
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		// A direct client (or a trusted peer that sent none): served
		// with the peer's address.
	case errors.Is(err, errUntrustedHeader):
		g.refuseProxyHeader(start, p, peer, codeProxyProtocolUntrusted,
			fmt.Sprintf("connection refused: a PROXY header from %s, which is not in proxy_protocol.%s.trusted; only the load balancers listed there may name a client's address (the header was not read, the connection was closed)", peer.Addr(), p.listener), nil)
		_ = c.Close()
		return nil, via, false
	case err != nil:
		g.refuseProxyHeader(start, p, peer, codeProxyProtocolInvalid,
			fmt.Sprintf("connection refused: the PROXY header from %s is invalid; it must be one v1 line (at most 107 bytes) or one v2 header naming a TCP source over IPv4 or IPv6", peer.Addr()), err)
		_ = c.Close()
		return nil, via, false
	case local:
		// A connection the load balancer made itself (a v2 LOCAL health
		// check, a v1 UNKNOWN): its own address is the source.
	default:
		src, via = hsrc, peer.Addr()
	}
	pc := &proxiedConn{prereadConn: prereadConn{Conn: c}, remote: net.TCPAddrFromAddrPort(src)}
	if br.Buffered() > 0 {
		pc.r = br
	}
	if cc, isCounted := c.(*countedConn); isCounted && cc.adm.perSource > 0 {
		s := src.Addr().Unmap().WithZone("")
		if !cc.adm.admitSource(s) {
			g.refuseConnection(p.refusals, pc, limitPerSource, s)
			return nil, via, false
		}
		cc.src, cc.sourced = s, true
	}
	return pc, via, true
}

// readProxyHeader reads the PROXY header br begins with, if any, from a
// peer trusted or not. It returns the header's client address; local when
// the header is a v2 LOCAL or v1 UNKNOWN one (the load balancer's own
// connection, whose address is the peer's); proxyproto.ErrNoProxyProtocol
// when br begins with something else (nothing of it consumed);
// errUntrustedHeader when an untrusted peer's bytes begin a header (read
// no further); errProxyHeaderIncomplete or what is wrong with a header
// otherwise. Only a trusted peer's header is parsed, and only a TCP source
// over IPv4 or IPv6 is returned.
func readProxyHeader(br *bufio.Reader, trusted bool) (src netip.AddrPort, local bool, err error) {
	if !trusted {
		return netip.AddrPort{}, false, untrustedHeader(br)
	}
	var h *proxyproto.Header
	if err = wholeV1Line(br); err == nil {
		h, err = proxyproto.Read(br)
	}
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return netip.AddrPort{}, false, err
	case err != nil:
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %w", errProxyHeaderIncomplete, err)
		}
		return netip.AddrPort{}, false, err
	case h.Command.IsLocal():
		return netip.AddrPort{}, true, nil
	}
	src, err = headerSource(h)
	return src, false, err
}

// errUntrustedHeader: a PROXY header signature from an untrusted peer.
var errUntrustedHeader = errors.New("a PROXY header from an untrusted peer")

// untrustedHeader looks at the first bytes of an untrusted peer's
// connection without consuming them: errUntrustedHeader when they begin
// a PROXY header (v1 "PROXY" or the v2 signature), otherwise
// proxyproto.ErrNoProxyProtocol (or the read's error when not one byte
// came). It reads only as far as the bytes could still be a signature.
func untrustedHeader(br *bufio.Reader) error {
	for n := 1; n <= len(proxyproto.SIGV2); n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if len(b) > 0 || errors.Is(err, io.EOF) {
				return proxyproto.ErrNoProxyProtocol
			}
			return err
		}
		v1 := n <= len(proxyproto.SIGV1) && string(b) == string(proxyproto.SIGV1[:n])
		v2 := string(b) == string(proxyproto.SIGV2[:n])
		switch {
		case v1 && n == len(proxyproto.SIGV1), v2 && n == len(proxyproto.SIGV2):
			return errUntrustedHeader
		case !v1 && !v2:
			return proxyproto.ErrNoProxyProtocol
		}
	}
	return proxyproto.ErrNoProxyProtocol
}

// wholeV1Line waits, when the connection starts with 'P' (a v1 header,
// or an HTTP method), until its first line is buffered or 107 bytes are:
// the parser refuses a v1 header that did not arrive in one read, which a
// load balancer's header split across TCP segments would be. The read
// deadline bounds the wait. A read error other than the end of the
// stream is returned; the parser reports what is wrong with what came.
func wholeV1Line(br *bufio.Reader) error {
	for n := 1; n < maxV1Header; n++ {
		b, err := br.Peek(n)
		if len(b) == 0 {
			return err
		}
		if b[0] != 'P' || bytes.IndexByte(b, '\n') >= 0 {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if n < br.Buffered() {
			n = br.Buffered() - 1 // look at everything buffered next
		}
	}
	return nil
}

// maxV1Header is the longest v1 header, CRLF included (HAProxy's
// proxy-protocol.txt, 2.1).
const maxV1Header = 107

// headerSource is the client address of a PROXY (not LOCAL) header: a TCP
// source over IPv4 or IPv6. AF_UNIX and UDP sources are refused: they are
// no address a cidrs factor, a connection limit or an audit line can
// name.
func headerSource(h *proxyproto.Header) (netip.AddrPort, error) {
	if !h.TransportProtocol.IsStream() || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return netip.AddrPort{}, fmt.Errorf("the header's transport is %s; only TCP over IPv4 or IPv6 is accepted", transportName(h.TransportProtocol))
	}
	ta, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}, errors.New("the header names no TCP source address")
	}
	ap := ta.AddrPort()
	a := ap.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
		return netip.AddrPort{}, fmt.Errorf("the header's source %s is no client address", a)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

func transportName(t proxyproto.AddressFamilyAndProtocol) string {
	switch {
	case t.IsUnix():
		return "AF_UNIX"
	case t.IsDatagram():
		return "UDP"
	case t.IsUnspec():
		return "UNSPEC"
	}
	return fmt.Sprintf("0x%02x", byte(t))
}

func tcpPort(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	return 0
}

// refuseProxyHeader audits, counts and logs (at most once per
// clientLogEvery per code) a connection refused for its PROXY header. The
// audit line's source is the peer's address, the only one known: a
// refused header is never believed; its workload is the one the peer's
// address verifies.
func (g *Gateway) refuseProxyHeader(start time.Time, p *proxyHeaders, peer netip.AddrPort, code, msg string, err error) {
	ev := identity.Evidence{Source: peer, SourceText: peer.Addr().Unmap().String()}
	wl := g.auditIdentity(g.baseCtx, ev)
	e := event{Time: start, Decision: policy.Deny.String(), Code: code,
		Workload: wl.DisplayName(), Factors: wl.Factors, Source: sourceOf(wl.Factors, ev)}
	if wantPresented(wl, code) {
		e.Presented = presented(ev)
	}
	g.metrics.refusals.WithLabelValues(code).Inc()
	e.Duration = time.Since(start)
	g.metrics.request(e.Decision, "", 0, e.Duration)
	g.audit.write(&e)
	attrs := []slog.Attr{slog.String("listener", p.listener), slog.String("source", e.Source)}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	g.logClientRefusal(g.baseCtx, code, msg, attrs...)
}

// proxiedConn is a connection whose PROXY header was read: RemoteAddr is
// the client's address (the header's source, or the peer's), and reads
// return first what the header's read buffered after it (prereadConn).
type proxiedConn struct {
	prereadConn
	remote net.Addr
}

// RemoteAddr is the client's address.
func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// NetConn returns the wrapped connection.
func (c *proxiedConn) NetConn() net.Conn { return c.Conn }

// SyscallConn is the socket, for the h1 server's wait for the next
// request; it fails while bytes read with the header are buffered above
// it (a wait on the socket would miss them).
func (c *proxiedConn) SyscallConn() (syscall.RawConn, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return nil, errNoSocket
	}
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

// viaKey is the context key of the address of the load balancer that
// sent a connection's PROXY header (netip.Addr).
type viaKey struct{}

// viaOf is the address of the load balancer whose PROXY header named the
// source of the connection ctx belongs to; invalid when there was none.
// It looks only when a listener reads PROXY headers.
func (g *Gateway) viaOf(ctx context.Context) netip.Addr {
	if !g.proxyHeadersOn {
		return netip.Addr{}
	}
	a, _ := ctx.Value(viaKey{}).(netip.Addr)
	return a
}

// viaString is ev.Via as audited: "" when the client connected directly.
func viaString(ev identity.Evidence) string {
	if !ev.Via.IsValid() {
		return ""
	}
	return ev.Via.Unmap().String()
}

// Interface guards.
var (
	_ syscall.Conn = (*proxiedConn)(nil)
)
