package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

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
type upstreamPool struct {
	private bool
	dialer  *dialer
	// t speaks HTTP/2 where the upstream offers it (HTTP/1.1 only with
	// upstream.http2: never); h1 never does.
	t, h1 *http.Transport
	// certs present a TLS client certificate (the tlsclient injector),
	// one transport per certificate, in this pool's class.
	certs *clientTransports
	// retired is set when a reload replaced the policy generation this
	// pool served; fallback then takes its requests.
	retired  atomic.Bool
	fallback *upstreamPool
}

// transport returns the round tripper for one request: the client
// certificate's, else HTTP/1.1 or the default one.
func (p *upstreamPool) transport(st *reqState) http.RoundTripper {
	if p.retired.Load() && p.fallback != nil {
		p = p.fallback
	}
	switch {
	case st.cert != nil:
		return p.certs.get(st.cert)
	case st.http1:
		return p.h1
	}
	return p.t
}

// closeIdle closes the pool's idle connections.
func (p *upstreamPool) closeIdle() {
	p.t.CloseIdleConnections()
	p.h1.CloseIdleConnections()
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
// addresses allow.
type upstreamPools struct {
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
	u.priv.fallback = u.oneShot
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
	u.priv.retired.Store(true)
	// Requests that picked this pool before now go to oneShot
	// (transport). HTTP/1 connections in use now are closed when they
	// come back: after CloseIdleConnections a transport keeps no
	// returning connection until a request asks it for one. Busy HTTP/2
	// connections stay until idle_conn_timeout, reachable by no request
	// of a later generation.
	u.priv.closeIdle()
	u.priv, u.privGen = nil, nil
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
