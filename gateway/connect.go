package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
)

// target is the destination a CONNECT or an absolute-URI request names.
type target struct {
	// host is lower case, without a trailing dot or IPv6 brackets.
	host string
	port int
	// ip is set when host is an IP literal.
	ip bool
}

func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

// parseTarget parses an authority "host:port" (port required unless
// defPort is non-zero).
//
// An intercepted request's Host has no port, as a rule: that case, and
// a host name that cannot be an IP literal, are found without the
// errors net.SplitHostPort and netip.ParseAddr would allocate to say so
// (TestParseTargetExhaustive and FuzzParseTarget hold it to
// parseTargetRef, the plain version, in the tests).
func parseTarget(authority string, defPort int) (target, error) {
	var host, portStr string
	var err error
	if defPort != 0 && strings.IndexByte(authority, ':') < 0 {
		err = errMissingPort // SplitHostPort's answer
	} else {
		host, portStr, err = net.SplitHostPort(authority)
	}
	var port int
	if err != nil {
		if defPort == 0 {
			return target{}, fmt.Errorf("%q is not host:port", authority)
		}
		host, port = authority, defPort
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	} else if port, err = strconv.Atoi(portStr); err != nil {
		port = 0
	}
	if port < 1 || port > 65535 {
		return target{}, fmt.Errorf("%q has no valid port", authority)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return target{}, fmt.Errorf("%q has no host", authority)
	}
	t := target{host: host, port: port}
	if mayBeIPLiteral(host) {
		if a, err := netip.ParseAddr(host); err == nil {
			if a.Zone() != "" {
				return target{}, fmt.Errorf("%q: zoned addresses are not allowed", authority)
			}
			t.host, t.ip = a.Unmap().String(), true
			return t, nil
		}
	}
	if err := canonical.CheckHost(host); err != nil {
		return target{}, hostError(authority, err)
	}
	return t, nil
}

// hostError says why the host of authority is no destination.
func hostError(authority string, err error) error {
	if errors.Is(err, canonical.ErrHostSyntax) {
		return fmt.Errorf("%q is not a valid host name", authority)
	}
	// The problem without its package prefix; still errors.Is-able.
	return fmt.Errorf("%q: %s%.0w", authority, strings.TrimPrefix(err.Error(), "canonical: "), err)
}

// errMissingPort stands for net.SplitHostPort's error on an authority
// without a colon; it is never returned.
var errMissingPort = errors.New("missing port in address")

// mayBeIPLiteral reports whether netip.ParseAddr may accept h: an IPv6
// literal has a colon, an IPv4 one only digits and dots. ParseAddr
// refuses anything else.
func mayBeIPLiteral(h string) bool {
	if strings.IndexByte(h, ':') >= 0 {
		return true
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// evidence is what the client connection presents for identity.
func evidence(r *http.Request) identity.Evidence {
	pa := r.Header["Proxy-Authorization"]
	ev := identity.Evidence{ProxyAuthorizations: len(pa)}
	if len(pa) > 0 {
		ev.ProxyAuthorization = pa[0]
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		// Formatted once: the source factor of every request of a
		// tunnel, and of its audit lines (sourceOf), is this string.
		ev.Source, ev.SourceText = ap, ap.Addr().Unmap().String()
	}
	if r.TLS != nil {
		ev.VerifiedChains = r.TLS.VerifiedChains
		ev.PeerCertificates = r.TLS.PeerCertificates
	}
	return ev
}

// identityRefusal answers a failed identity resolution. The error names
// subjects, issuers and files (never a token) and is logged, not sent.
func identityRefusal(err error) refusal {
	switch {
	case errors.Is(err, identity.ErrFactorConflict):
		return newRefusal(http.StatusForbidden, codeFactorConflict, "the verified identity factors name different workloads", "")
	case errors.Is(err, identity.ErrUnavailable):
		f := newRefusal(http.StatusServiceUnavailable, codeIdentityUnavail, "an identity factor could not be checked right now", "")
		f.RetryAfter = 5
		return f
	}
	return newRefusal(http.StatusForbidden, codeIdentityInvalid, "a presented identity factor did not verify", "")
}

// tunnelConn is the client side of an intercepted CONNECT: the hijacked
// connection plus what was established when the CONNECT was accepted.
// The intercepting server finds it under the *tls.Conn it serves.
type tunnelConn struct {
	net.Conn
	dest target
	// addrs are the destination addresses checked at CONNECT time; every
	// request in the tunnel dials one of these.
	addrs []netip.AddrPort
	// allowPrivate is the CONNECT decision's setting; addrs were checked
	// with it.
	allowPrivate bool
	ev           identity.Evidence
	// w is the workload the CONNECT was admitted as: the audit line of a
	// handshake refused in the tunnel names it (the requests inside are
	// identified each on their own).
	w         identity.Workload
	done      func()
	closeOnce sync.Once
	// watch watches the context of the tunnel's HTTP/1.1 requests for
	// the one in flight (inflight.go).
	watch flightWatch
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.done)
	return err
}

// CloseWrite half-closes when the underlying connection can.
func (c *tunnelConn) CloseWrite() error { return closeWrite(c.Conn) }

// errNoSocket: the client connection has no socket of its own to expose
// (it is the inner layer of tls_listen's TLS), or bytes the client sent
// are buffered above it.
var errNoSocket = errors.New("gateway: the client connection exposes no socket")

// SyscallConn is the client socket, for the h1 server's wait for the
// next request on an idle connection (it waits for the socket to become
// readable, without reading). It fails when the socket is not all there
// is to read: under tls_listen's TLS layer, or below a prereadConn still
// holding bytes.
func (c *tunnelConn) SyscallConn() (syscall.RawConn, error) {
	nc := c.Conn
	for {
		switch x := nc.(type) {
		case *tls.Conn:
			return nil, errNoSocket
		case *prereadConn:
			if x.r != nil && x.r.Buffered() > 0 {
				return nil, errNoSocket
			}
			nc = x.Conn
		case syscall.Conn:
			return x.SyscallConn()
		case interface{ NetConn() net.Conn }: // countedConn
			nc = x.NetConn()
		default:
			return nil, errNoSocket
		}
	}
}

type ctxKey int

const (
	tunnelKey ctxKey = iota
	stateKey
)

// interceptedConnContext puts the tunnel's *tunnelConn into the context of
// every request on it.
func interceptedConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		if t, ok := tc.NetConn().(*tunnelConn); ok {
			return context.WithValue(ctx, tunnelKey, t)
		}
	}
	return ctx
}

// errSNIMismatch refuses a TLS handshake whose SNI names another host than
// the CONNECT did.
var errSNIMismatch = errors.New("TLS server name does not match the CONNECT target")

// checkSNI refuses a handshake whose SNI names another host than the
// CONNECT target (invariant 1). It is the interception listener's
// GetConfigForClient: it runs for every ClientHello, before a session is
// resumed, so a resumed handshake is checked as a full one is.
func (g *Gateway) checkSNI(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	tc, ok := hello.Conn.(*tunnelConn)
	if !ok {
		return nil, errors.New("gateway: handshake on a connection that is not a tunnel")
	}
	sni := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if sni != "" && sni != tc.dest.host {
		g.metrics.refusals.WithLabelValues(codeSNIMismatch).Inc()
		g.auditConnect(time.Now(), tc.ev, tc.w, tc.dest,
			policy.Decision{Action: policy.Deny, Code: codeSNIMismatch}, 0, "")
		g.logClientRefusal(hello.Context(), codeSNIMismatch, "refused TLS handshake: SNI differs from the CONNECT target",
			slog.String("connect", tc.dest.hostPort()), slog.String("sni", sni))
		return nil, errSNIMismatch
	}
	return nil, nil // the interception configuration itself
}

// leafCertificate presents the CONNECT target's leaf certificate (checkSNI
// has checked the client's SNI).
func (g *Gateway) leafCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	tc, ok := hello.Conn.(*tunnelConn)
	if !ok {
		return nil, errors.New("gateway: handshake on a connection that is not a tunnel")
	}
	c, err := g.issuer.Certificate(hello.Context(), tc.w.Name, tc.dest.host)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoLeaf, err)
	}
	return c, nil
}

// errNoLeaf: the interception CA made no certificate for a handshake.
var errNoLeaf = errors.New("no leaf certificate for the tunnel")

// refuseHandshake audits a client's TLS handshake with the gateway that
// failed, as every refused or cut connection is: inside an intercepted
// tunnel (dest, the CONNECT target; listener "listen") or on tls_listen
// (dest zero). An untrusted, expired or otherwise unverifiable client
// certificate on tls_listen is identity_invalid; a leaf the interception
// CA could not make is interception_unavailable; anything else the
// client did (no common version or cipher, not TLS, rejected the
// gateway's certificate — it does not trust the interception CA —, too
// slow) is client_tls_error. The line names w: inside a tunnel the
// workload its CONNECT was admitted as, on tls_listen the source only
// (nothing verified yet). A handshake refused for its SNI was audited
// by checkSNI, and a client that closed before sending any byte asked
// nothing: neither is audited here. Before, each was a debug log line
// only: nothing in the audit log showed the attempt.
func (g *Gateway) refuseHandshake(start time.Time, ev identity.Evidence, w identity.Workload, dest target, listener string, err error) {
	if errors.Is(err, errSNIMismatch) || errors.Is(err, io.EOF) {
		g.log.Debug("TLS handshake with a client failed", slog.String("listener", listener), slog.String("connect", dest.hostPort()), slog.Any("error", err))
		return
	}
	code, msg := codeClientTLSError, "TLS handshake with a client failed"
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		code, msg = codeIdentityInvalid, "TLS handshake refused: the client certificate does not verify"
		ev.PeerCertificates = cve.UnverifiedCertificates
	case errors.Is(err, errNoLeaf):
		code, msg = codeInterceptionUnavailable, "TLS handshake failed: no leaf certificate for the CONNECT target"
	}
	g.metrics.refusals.WithLabelValues(code).Inc()
	method := http.MethodConnect
	if dest.host == "" {
		method = ""
	}
	g.auditConnection(start, ev, w, method, dest, policy.Decision{Action: policy.Deny, Code: code}, 0, "")
	attrs := []slog.Attr{slog.String("listener", listener), slog.String("source", sourceString(ev)), slog.String("error", err.Error())}
	if dest.host != "" {
		attrs = append(attrs, slog.String("connect", dest.hostPort()))
	}
	g.logClientRefusal(g.baseCtx, code, msg, attrs...)
}

// ticketHost prefixes the name a session ticket is bound to, in its
// SessionState.Extra.
const ticketHost = "credgate-host:"

// wrapSession encrypts a session ticket of the interception listener
// bound to the SNI it was issued under (the CONNECT target, which
// checkSNI made sure of).
func (g *Gateway) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	ss.Extra = append(ss.Extra, []byte(ticketHost+cs.ServerName))
	return g.mitmTLS.EncryptTicket(cs, ss)
}

// unwrapSession resumes a session only under the SNI its ticket was
// issued for, and never without an SNI: a session made for one host is
// not resumed in a tunnel to another. A ticket it cannot use (unknown or
// rotated-out key, other host, damaged) means a full handshake, not an
// error.
func (g *Gateway) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	if cs.ServerName == "" {
		return nil, nil
	}
	ss, err := g.mitmTLS.DecryptTicket(identity, cs)
	if err != nil || ss == nil || len(ss.Extra) != 1 || string(ss.Extra[0]) != ticketHost+cs.ServerName {
		return nil, nil
	}
	return ss, nil
}

// handleConnect decides a CONNECT before any TLS with the client.
func (g *Gateway) handleConnect(authority string, pctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	r := pctx.Req
	start := time.Now()
	ev := evidence(r)
	ev.Via = g.viaOf(r.Context())
	reject := func(w identity.Workload, dest target, d policy.Decision, f refusal) (*goproxy.ConnectAction, string) {
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		d.Code = f.Code
		g.auditConnect(start, ev, w, dest, d, f.Status, f.Switch)
		pctx.Resp = f.response(r)
		return goproxy.RejectConnect, authority
	}
	if g.draining.Load() {
		return reject(identity.Workload{}, target{}, policy.Decision{}, newRefusal(http.StatusServiceUnavailable, codeShuttingDown, "the gateway is shutting down; retry", ""))
	}
	// The target as it arrived: net/http drops userinfo from r.URL (and
	// goproxy's authority), so judge the raw request target.
	raw := r.RequestURI
	if raw == "" {
		raw = authority
	}
	dest, tf := connectTarget(raw, authority)
	if tf != nil {
		return reject(identity.Workload{}, target{}, policy.Decision{}, *tf)
	}
	q := policy.Query{Connect: true, Host: dest.host, Port: dest.port}
	// A CONNECT fetches no credential (the requests inside the tunnel
	// are admitted, and hold their policy, one by one): not held.
	a, f := g.admit(r.Context(), g.store.Current(), ev, q, dest, pinnedAddrs{}, nil)
	if f != nil {
		return reject(a.wl, dest, policy.Decision{Action: policy.Deny, Rule: a.d.Rule}, *f)
	}
	w, d, addrs, polVersion := a.wl, a.d, a.addrs, a.pol.Stats().Hash
	if d.Action == policy.Tunnel {
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
			g.splice(start, client, ev, w, dest, addrs, d, polVersion, judged(a.pol, q, w, d))
		}}, authority
	}
	// The leaf the handshake will present, made (or found in the cache)
	// now: a host the interception CA may not or cannot sign for is
	// refused with an answer and an audit line, not a failed handshake.
	if _, err := g.issuer.Certificate(r.Context(), w.Name, dest.host); err != nil {
		// Audited as the refusal it is, not as the intercept decision
		// it refused (TestExplainMatchesServe found "intercept" there).
		return reject(w, dest, policy.Decision{Action: policy.Deny, Rule: d.Rule}, leafRefusal(dest, err, d.Rule))
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
		g.intercept(client, ev, w, dest, addrs, d.AllowPrivate)
	}}, authority
}

// connectTarget is the destination of a CONNECT whose request target is
// raw (as it arrived) and authority (as goproxy passes it on), or its
// refusal.
func connectTarget(raw, authority string) (target, *refusal) {
	if _, _, err := canonical.Authority(raw); err != nil {
		f := newRefusal(http.StatusBadRequest, codeBadConnectTarget, strings.TrimPrefix(err.Error(), "canonical: "), "")
		return target{}, &f
	}
	dest, err := parseTarget(authority, 0)
	if err != nil {
		f := newRefusal(http.StatusBadRequest, codeBadConnectTarget, "CONNECT target "+err.Error()+"; send CONNECT host:port", "")
		return target{}, &f
	}
	return dest, nil
}

// leafRefusal answers a CONNECT whose host the interception CA does not
// sign a leaf for.
func leafRefusal(dest target, err error, rule string) refusal {
	msg := strings.TrimPrefix(err.Error(), "mitm: ")
	switch {
	case errors.Is(err, mitm.ErrNotPermitted):
		return newRefusal(http.StatusForbidden, codeCANotPermitted, msg, rule)
	case errors.Is(err, mitm.ErrBadHost):
		return newRefusal(http.StatusBadRequest, codeBadConnectTarget, msg, rule)
	}
	return newRefusal(http.StatusBadGateway, codeInterceptionUnavailable, fmt.Sprintf("no certificate for %s: %s", dest.host, msg), rule)
}

// addressRefusal answers a destination that cannot or may not be dialled.
func addressRefusal(dest target, err error, rule string) refusal {
	if errors.Is(err, errPrivateAddress) {
		return newRefusal(http.StatusForbidden, codePrivateAddress,
			privateAddressReason(dest.hostPort(), restrictedReason(err)), rule)
	}
	return newRefusal(http.StatusBadGateway, codeDNSError, fmt.Sprintf("%s does not resolve", dest.host), rule)
}

// connectWriter is the ResponseWriter goproxy gets for a CONNECT. Its
// Hijack keeps what the client sent right behind the CONNECT request,
// before the 200 (an optimistic TLS ClientHello, the first bytes of a
// tunnelled protocol): net/http read those into the buffer it parsed the
// request from, and goproxy hands a ConnectHijack hook the bare
// connection. The returned connection yields them first.
type connectWriter struct{ http.ResponseWriter }

// Hijack implements http.Hijacker.
func (w connectWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil || brw == nil || brw.Reader.Buffered() == 0 {
		return c, brw, err
	}
	// Only then wrapped: an unwrapped *net.TCPConn keeps its fast paths.
	return &prereadConn{Conn: c, r: brw.Reader}, brw, nil
}

// Unwrap is for http.ResponseController.
func (w connectWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// prereadConn is a client connection whose reads return the bytes r
// buffered before reading the connection again.
type prereadConn struct {
	net.Conn
	r *bufio.Reader // nil once drained
}

func (c *prereadConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p) // reads only what is buffered
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes when the underlying connection can.
func (c *prereadConn) CloseWrite() error { return closeWrite(c.Conn) }

const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// intercept answers 200, does the TLS handshake with the client (with the
// leaf certificate and the SNI check) and serves the requests inside: an
// HTTP/2 client on the intercepting net/http server, an HTTP/1.1 client
// on the h1 server (gateway/internal/h1), both with serveIntercepted.
func (g *Gateway) intercept(client net.Conn, ev identity.Evidence, w identity.Workload, dest target, addrs []netip.AddrPort, allowPrivate bool) {
	if _, err := io.WriteString(client, connectEstablished); err != nil {
		_ = client.Close()
		return
	}
	g.metrics.tunnels.Inc()
	tc := &tunnelConn{Conn: client, dest: dest, addrs: addrs, allowPrivate: allowPrivate, ev: ev, w: w, done: func() { g.metrics.tunnels.Dec() }}
	conn := tls.Server(tc, g.mitmTLS)
	// The handshake presents the leaf certificate after the SNI check
	// (leafCertificate); it must finish within read_header_timeout.
	start := time.Now()
	if err := handshake(conn, g.cfg.Limits.ReadHeaderTimeout.D()); err != nil {
		g.refuseHandshake(start, ev, w, dest, "listen", err)
		_ = conn.Close()
		return
	}
	if conn.ConnectionState().NegotiatedProtocol == "h2" {
		// HTTP/2 clients are served by the net/http server.
		if err := g.mitmLn.hand(conn); err != nil {
			_ = conn.Close()
		}
		return
	}
	// A goroutine of its own: the one running this hook holds the proxy
	// listener's connection state (its h1 buffers, the CONNECT request)
	// until it returns.
	go g.h1Srv.Serve(context.WithValue(g.baseCtx, tunnelKey, tc), conn, g.intercepted)
}

// splice connects the client to the destination without interception.
// polVersion is the policy that decided, for the line written when the
// tunnel ends (a reload may have come since), and jd the decision, for
// deciding the tunnel again after a reload.
func (g *Gateway) splice(start time.Time, client net.Conn, ev identity.Evidence, w identity.Workload, dest target, addrs []netip.AddrPort, d policy.Decision, polVersion string, jd judgement) {
	ctx, cancel := context.WithTimeout(g.baseCtx, g.cfg.Upstream.DialTimeout.D())
	upstream, err := g.dialer.dialAny(ctx, addrs)
	cancel()
	if err != nil {
		g.log.Info("tunnel: destination unreachable", slog.String("connect", dest.hostPort()), slog.Any("error", err))
		f := newRefusal(http.StatusBadGateway, codeUpstreamUnreach, fmt.Sprintf("%s is not reachable", dest.hostPort()), d.Rule)
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		d.Action, d.Code = policy.Deny, f.Code
		g.auditConnect(start, ev, w, dest, d, f.Status, "")
		_ = f.response(nil).Write(client)
		_ = client.Close()
		return
	}
	if _, err := io.WriteString(client, connectEstablished); err != nil {
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	g.auditConnect(start, ev, w, dest, d, http.StatusOK, "")
	g.metrics.tunnels.Inc()
	defer g.metrics.tunnels.Dec()
	lc := g.newLong(kindTunnel, ev, w, d, jd)
	lc.frames = g.tunnelSNI(lc, client, dest, sourceString(ev))
	g.openLong(lc)
	lc.start(client, upstream)
	g.relay(lc, client, upstream)
	reason := g.closeLong(lc)

	// The tunnel's second audit line says how it ended.
	g.audit.write(&event{
		Time:     start,
		Workload: w.DisplayName(),
		Factors:  w.Factors,
		Source:   sourceString(ev),
		Via:      viaString(ev),
		Method:   http.MethodConnect,
		Scheme:   "https",
		Host:     dest.host,
		Port:     dest.port,
		Rule:     d.Rule,
		Decision: d.Outcome(),
		Status:   http.StatusOK,
		BytesIn:  lc.in.Load(),
		BytesOut: lc.out.Load(),
		Duration: time.Since(start),
		Closed:   reason,

		PolicyVersion: polVersion,
	})
}

// auditConnect writes the audit line of a refused or tunnelled CONNECT;
// sw names the kill switch that refused it, if any.
func (g *Gateway) auditConnect(start time.Time, ev identity.Evidence, w identity.Workload, dest target, d policy.Decision, status int, sw string) {
	g.auditConnection(start, ev, w, http.MethodConnect, dest, d, status, sw)
}

// auditConnection writes the audit line of a client connection refused
// or tunnelled before any request in it: a CONNECT (method CONNECT), or
// a tls_listen connection whose handshake failed (method and destination
// empty).
func (g *Gateway) auditConnection(start time.Time, ev identity.Evidence, w identity.Workload, method string, dest target, d policy.Decision, status int, sw string) {
	decision := d.Outcome()
	g.metrics.request(decision, d.Rule, status, time.Since(start))
	var pres []string
	if wantPresented(w, d.Code) {
		pres = presented(ev)
	}
	g.audit.write(&event{
		Time:      start,
		Presented: pres,
		Workload:  w.DisplayName(),
		Factors:   w.Factors,
		Source:    sourceString(ev),
		Via:       viaString(ev),
		Method:    method,
		Scheme:    "https",
		Host:      dest.host,
		Port:      dest.port,
		Rule:      d.Rule,
		Decision:  decision,
		Code:      d.Code,
		Status:    status,
		Switch:    sw,
		Duration:  time.Since(start),
	})
}

func sourceString(ev identity.Evidence) string {
	if !ev.Source.IsValid() {
		return ""
	}
	return ev.Source.Addr().Unmap().String()
}

// sourceOf is sourceString(ev) for a request whose workload's factors
// were verified from ev: the source factor's subject is that text
// already (identity.SourceVerifier makes it from the same address), and
// it is returned instead of a new string when it is equal to it, which
// is checked byte for byte without making one.
func sourceOf(factors []identity.Factor, ev identity.Evidence) string {
	if !ev.Source.IsValid() {
		return ""
	}
	a := ev.Source.Addr().Unmap()
	for i := range factors {
		if f := &factors[i]; f.Kind == identity.KindSource {
			var buf [64]byte
			if string(a.AppendTo(buf[:0])) == f.Subject {
				return f.Subject
			}
			break
		}
	}
	return a.String()
}
