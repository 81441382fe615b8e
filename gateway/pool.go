package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/gateway/internal/h1client"
	"github.com/credgate/credgate/policy"
)

// upstreamPool is a set of upstream transports whose pooled connections
// all belong to one class of address (invariant 8):
//
//   - the public pool dials only addresses no special-purpose range
//     contains (its dial hook drops the others), so any request may reuse
//     its connections whatever its decision says about allow_private;
//   - a private pool is used only by requests whose decision allows
//     private addresses and whose checked addresses include one, so a
//     connection dialled to 10.0.0.5 under an allow_private rule is never
//     handed to a request whose decision does not allow it. There is one
//     per policy generation: a reload retires it (its idle connections are
//     closed, and requests still holding it go to a pool that keeps
//     nothing), so no request of a later generation reuses a connection
//     an earlier policy allowed.
//
// http.Transport pools by scheme and host:port only; keeping the classes
// in separate transports is what makes the address part of the key. It
// also covers connections that net/http dials for one request and hands to
// another waiting for the same host.
// The h1client pools as Transport does, one per upstreamPool, so the
// same holds for the connections it keeps.
type upstreamPool struct {
	private bool
	dialer  *dialer
	// t speaks HTTP/2 where the upstream offers it (HTTP/1.1 only with
	// upstream.http2: never); h1 never does. Under upstream.http2: match,
	// h1m serves HTTP/1.1 clients in HTTP/1.1 (dialH1), and match (HTTP/2
	// to upstreams that speak nothing else, dialH2) those its dialer
	// found to speak HTTP/2 alone; nil otherwise.
	t, h1, h1m, match *http.Transport
	// h1c sends an HTTP/1.1 client's requests without a body or with
	// one of declared length up to 16 KiB on the handler's goroutine
	// (h1client), where h1m would under upstream.http2: match and h1
	// (p.t) under never; the others go to that transport. nil in a pool
	// that keeps no connection.
	h1c *h1client.Client
	// tlsConf and handshakeTimeout are h1m's and match's TLS settings.
	tlsConf          *tls.Config
	handshakeTimeout time.Duration
	// alpn remembers what dialMatch learned of upstreams that did not
	// select http/1.1.
	alpn alpnMemo
	// certs present a TLS client certificate (the tlsclient injector),
	// one transport per certificate, in this pool's class.
	certs *clientTransports
	// h2 counts the HTTP/2 connections of every pool that keeps
	// connections (one for the gateway); nil in a pool that keeps none.
	h2 *h2Conns
	// next is set when the pool is retired: a policy reload replaced the
	// generation a private pool served, or a reload of upstream.ca_bundle
	// replaced the trust every pool verified under. Requests that picked
	// this pool before then go to next (and on, as next retires too).
	next atomic.Pointer[upstreamPool]
}

// current is the pool that serves a request that picked p: p, or the
// pool it was retired to.
func (p *upstreamPool) current() *upstreamPool {
	for n := p.next.Load(); n != nil; n = p.next.Load() {
		p = n
	}
	return p
}

// released is called when a request that picked p is done with its
// upstream response: the idle connections of every retired pool on the
// way from p to the current one are closed, so that a connection such a
// request had in use (an HTTP/2 one above all, which CloseIdleConnections
// cannot refuse back as it does HTTP/1 ones) is closed once it is idle
// rather than at idle_conn_timeout: a retired pool closes when drained.
func (p *upstreamPool) released() {
	for n := p.next.Load(); n != nil; n = p.next.Load() {
		p.closeIdle()
		p = n
	}
}

// transport returns the round tripper for one request to u: the client
// certificate's, else HTTP/1.1 or the default one. An HTTP/1.1 client's
// request under upstream.http2: match goes to h1m, or to match once h1m's
// dialer found the upstream to speak HTTP/2 alone.
func (p *upstreamPool) transport(st *reqState, u *url.URL) http.RoundTripper {
	p = p.current()
	switch {
	case st.cert != nil:
		return p.certs.get(st.cert)
	case st.http1 && p.h1m != nil && st.long == nil:
		if p.alpn.get(alpnKeyOf(u)) == alpnHTTP2Only {
			return p.match
		}
		if p.h1c != nil {
			return p.h1c // h1m for what it does not send itself
		}
		return p.h1m
	case st.http1:
		// A WebSocket upgrade needs HTTP/1.1 all the way.
		return p.h1
	case p.t == p.h1 && p.h1c != nil:
		// upstream.http2: never.
		return p.h1c
	}
	return p.t
}

// mayHTTP2 reports whether t, a round tripper p.transport returned, may
// send a request over HTTP/2 (the HTTP/2 connections it is handed are
// counted in p.h2): not the gateway's HTTP/1.1 client nor a transport
// that speaks HTTP/1.1 alone.
func mayHTTP2(p *upstreamPool, t http.RoundTripper) bool {
	if _, own := t.(*h1client.Client); own {
		return false
	}
	p = p.current()
	return t != http.RoundTripper(p.h1) && (p.h1m == nil || t != http.RoundTripper(p.h1m))
}

// alpnH1 and alpnH2 are what dialH1 and dialH2 offer: one protocol at a time,
// since servers choose by their own preference and most prefer h2.
var (
	alpnH1 = []string{"http/1.1"}
	alpnH2 = []string{"h2"}
)

// errHTTP2Only is what dialH1 returns for an upstream that speaks HTTP/2
// alone; timedTransport then sends the request through match.
var errHTTP2Only = errors.New("gateway: the upstream speaks HTTP/2 only")

// dialH1 is h1m's DialTLSContext: TLS to one of the request's checked
// addresses offering http/1.1 alone (servers choose by their own
// preference, and most prefer h2), so an upstream that speaks HTTP/1.1 is
// spoken to in the client's protocol. An upstream that speaks HTTP/2
// alone — it refuses with no_application_protocol, or negotiates nothing
// and then selects h2 when offered it alone (Go's servers let the first
// handshake go on and close the connection at the first HTTP/1.1 request)
// — is remembered, and errHTTP2Only returned before anything of the
// request was sent. A server that negotiates nothing either way speaks
// HTTP/1.1 without ALPN; that too is remembered, so the second handshake
// is made once per host and port.
func (p *upstreamPool) dialH1(ctx context.Context, network, addr string) (net.Conn, error) {
	key := alpnKeyOf(&url.URL{Host: addr})
	c, err := p.dialTLS(ctx, network, addr, alpnH1)
	switch {
	case isNoALPN(err):
		p.alpn.set(key, alpnHTTP2Only)
		return nil, errHTTP2Only
	case err != nil:
		return nil, err
	case c.ConnectionState().NegotiatedProtocol != "" || p.alpn.get(key) == alpnHTTP1:
		return c, nil
	}
	c2, err := p.dialTLS(ctx, network, addr, alpnH2)
	if c2 != nil {
		_ = c2.Close()
	}
	if err == nil && c2.ConnectionState().NegotiatedProtocol == "h2" {
		_ = c.Close()
		p.alpn.set(key, alpnHTTP2Only)
		return nil, errHTTP2Only
	}
	p.alpn.set(key, alpnHTTP1)
	return c, nil
}

// dialTLSH1 is h1c's DialTLS under upstream.http2: never: TLS offering
// http/1.1 alone, as h1 dials.
func (p *upstreamPool) dialTLSH1(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.dialTLS(ctx, network, addr, alpnH1)
}

// dialH2 is match's DialTLSContext, for upstreams dialH1 found to speak
// HTTP/2 alone: TLS offering h2 alone.
func (p *upstreamPool) dialH2(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.dialTLS(ctx, network, addr, alpnH2)
}

// dialTLS dials addr (one of the request's checked addresses) and does
// the TLS handshake offering protos, verifying the server for addr's host.
func (p *upstreamPool) dialTLS(ctx context.Context, network, addr string, protos []string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: upstream address %q: %w", addr, err)
	}
	raw, err := p.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := p.tlsConf.Clone()
	cfg.ServerName = host
	cfg.NextProtos = protos
	c := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, p.handshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return c, nil
}

// isNoALPN reports whether a handshake failed with the server's
// no_application_protocol alert (RFC 7301 §3.2).
func isNoALPN(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == "tls: no application protocol"
}

// alpnKind is what an upstream's TLS said about its protocols.
type alpnKind uint8

const (
	alpnUnknown   alpnKind = iota
	alpnHTTP1              // it speaks HTTP/1.1 (selected it, or has no ALPN)
	alpnHTTP2Only          // it speaks HTTP/2 alone
)

// alpnKey is an upstream's host and port, substrings of the request's
// URL: no allocation to look one up.
type alpnKey struct{ host, port string }

// alpnKeyOf is the key of an https URL's host.
func alpnKeyOf(u *url.URL) alpnKey {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return alpnKey{u.Hostname(), port}
}

// alpnMemo remembers what dialH1 learned per upstream. Bounded: it is
// emptied when full.
type alpnMemo struct {
	mu sync.Mutex
	m  map[alpnKey]alpnKind
}

const maxALPNMemo = 4096

func (a *alpnMemo) get(k alpnKey) alpnKind {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[k]
}

func (a *alpnMemo) set(k alpnKey, v alpnKind) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) >= maxALPNMemo {
		a.m = make(map[alpnKey]alpnKind)
	}
	a.m[k] = v
}

// closeIdle closes the pool's idle connections.
func (p *upstreamPool) closeIdle() {
	p.t.CloseIdleConnections()
	p.h1.CloseIdleConnections()
	if p.h1c != nil {
		p.h1c.CloseIdleConnections()
	}
	if p.h1m != nil {
		p.h1m.CloseIdleConnections()
		p.match.CloseIdleConnections()
	}
	p.certs.closeIdle()
}

// dial is the pool's DialContext: it dials one of the addresses checked
// for this request (reqState.addrs), never resolving again, so the address
// checked is the address dialled. The public pool refuses to dial a
// special-purpose address, whatever reached it.
func (p *upstreamPool) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	st, _ := ctx.Value(stateKey).(*reqState)
	if st == nil || len(st.addrs) == 0 {
		// Every request the gateway forwards carries its checked
		// addresses; refuse anything else rather than resolve here.
		return nil, errors.New("gateway: upstream dial without checked addresses")
	}
	addrs := st.addrs
	if !p.private {
		addrs = slices.DeleteFunc(slices.Clone(addrs), func(a netip.AddrPort) bool { return isRestricted(a.Addr()) })
		if len(addrs) == 0 {
			return nil, fmt.Errorf("gateway: upstream dial: %w; the shared connection pool dials none", errPrivateAddress)
		}
	}
	return p.dialer.dialAny(ctx, addrs)
}

// upstreamPools hands each request the pool its decision and checked
// addresses allow. It is one trust generation: every pool of it verifies
// upstream servers against the same roots (trust). A reload of
// upstream.ca_bundle builds a new generation and retires this one
// (retireTo).
type upstreamPools struct {
	// trust is what every pool of the generation verifies against.
	trust *upstreamTrust
	// next is the generation that replaced this one; nil while current.
	next atomic.Pointer[upstreamPools]

	newPool func(private, keepAlive bool) *upstreamPool
	// current is the policy in force.
	current func() *policy.Policy
	public  *upstreamPool
	// oneShot keeps no connection: it serves a private request decided by
	// a policy that a reload has replaced since.
	oneShot *upstreamPool

	mu      sync.Mutex
	priv    *upstreamPool // nil until needed, and after a reload
	privGen *policy.Policy
}

func newUpstreamPools(newPool func(private, keepAlive bool) *upstreamPool, current func() *policy.Policy) *upstreamPools {
	return &upstreamPools{newPool: newPool, current: current, public: newPool(false, true), oneShot: newPool(true, false)}
}

// forRequest returns the pool for a request that pol decided, whose
// decision allows private addresses or not, and that will dial addrs.
func (u *upstreamPools) forRequest(pol *policy.Policy, allowPrivate bool, addrs []netip.AddrPort) *upstreamPool {
	if !allowPrivate || !slices.ContainsFunc(addrs, func(a netip.AddrPort) bool { return isRestricted(a.Addr()) }) {
		// Without allow_private, addrs hold no restricted address (and
		// the public pool would not dial one).
		return u.public
	}
	u.mu.Lock()
	if n := u.next.Load(); n != nil {
		// Retired while the request chose: the new trust serves it.
		u.mu.Unlock()
		return n.forRequest(pol, allowPrivate, addrs)
	}
	defer u.mu.Unlock()
	if u.priv != nil && u.privGen == pol {
		return u.priv
	}
	if pol != u.current() {
		return u.oneShot
	}
	// pol is a generation newer than the pool (its reload is being
	// announced): retire the old pool now.
	u.retireLocked()
	u.priv, u.privGen = u.newPool(true, true), pol
	return u.priv
}

// reload retires the private pool of the replaced policy.
func (u *upstreamPools) reload() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.retireLocked()
}

func (u *upstreamPools) retireLocked() {
	if u.priv == nil {
		return
	}
	u.priv.next.Store(u.oneShot)
	// Requests that picked this pool before now go to oneShot
	// (transport). HTTP/1 connections in use now are closed when they
	// come back: after CloseIdleConnections a transport keeps no
	// returning connection until a request asks it for one. Busy HTTP/2
	// connections, reachable by no request of a later generation, are
	// closed as the requests holding them end (released).
	u.priv.closeIdle()
	u.priv, u.privGen = nil, nil
}

// retireTo replaces this trust generation by next: each of its pools is
// retired to next's pool of the same kind (a private one to next's
// oneShot, which keeps nothing), so a request that chose a pool of this
// generation and has not yet sent anything goes out under next's trust,
// and no connection verified under this generation's roots is handed to
// a request after it (nor are its TLS session caches used again; each
// generation has its own). Requests in flight finish on the connections
// they hold; the idle ones are closed now and the others as the requests
// holding them end (released).
func (u *upstreamPools) retireTo(next *upstreamPools) {
	// Handshakes its pools still make are verified under next's trust
	// too (upstreamTrust.verify).
	u.trust.next.Store(next.trust)
	u.mu.Lock()
	u.public.next.Store(next.public)
	u.oneShot.next.Store(next.oneShot)
	priv := u.priv
	if priv != nil {
		priv.next.Store(next.oneShot)
	}
	u.priv, u.privGen = nil, nil
	u.next.Store(next)
	u.mu.Unlock()
	u.closeIdle()
	if priv != nil {
		priv.closeIdle()
	}
}

// closeIdle closes every idle upstream connection (shutdown).
func (u *upstreamPools) closeIdle() {
	u.public.closeIdle()
	u.oneShot.closeIdle()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.priv != nil {
		u.priv.closeIdle()
	}
}
