package gateway

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// codeConnectionLimit: a client connection over limits.max_connections or
// limits.max_connections_per_source, refused when accepted (503 on the
// plain proxy listener, a closed connection on tls_listen).
const codeConnectionLimit = "connection_limit"

// Connection limit kinds: the limit label of
// credgate_connections_refused_total.
const (
	limitGlobal    = "global"
	limitPerSource = "per_source"
)

// Sizes behind limits.max_connections' default (ConnectionCaps).
const (
	// fdReserve is the most file descriptors kept apart from client
	// connections for everything else the gateway opens (listeners,
	// audit files, Redis, providers, the admin API).
	fdReserve = 1024
	// fdsPerConnection: a client connection and the upstream connection
	// it may hold (a spliced tunnel holds one each).
	fdsPerConnection = 2
	// connectionMemory is the memory budgeted per client connection:
	// about 27 KiB idle, more with a TLS connection and a request in
	// flight (docs/performance.md).
	connectionMemory = 64 << 10
	// baseMemory is the gateway's memory without clients.
	baseMemory = 32 << 20
	// minDefaultConnections is the smallest default cap.
	minDefaultConnections = 64
	// noFileLimitConnections is the default where RLIMIT_NOFILE cannot
	// be read (not Unix).
	noFileLimitConnections = 10000
)

// ConnectionCaps returns the connection limits in force: max_connections
// and max_connections_per_source as set, or their defaults (0: off).
// max_connections defaults to what the process can hold: half of the
// soft RLIMIT_NOFILE after a reserve of min(1024, a quarter) descriptors
// (each client connection may hold an upstream one), and, when the Go
// memory limit is set (GOMEMLIMIT, or the container's limit the CLI sets
// it from), no more than 64 KiB per connection above 32 MiB; at least 64.
// max_connections_per_source defaults to a quarter of the max_connections
// in force (off when that is off), so that no one client address takes
// the gateway's every connection.
func (l Limits) ConnectionCaps() (total, perSource int) {
	nofile, ok := fileLimit()
	return l.connectionCaps(nofile, ok, debug.SetMemoryLimit(-1))
}

func (l Limits) connectionCaps(nofile uint64, nofileKnown bool, memLimit int64) (total, perSource int) {
	if l.MaxConnections != nil {
		total = *l.MaxConnections
	} else {
		total = noFileLimitConnections
		if nofileKnown {
			reserve := min(nofile/4, fdReserve)
			total = int(min((nofile-reserve)/fdsPerConnection, math.MaxInt32))
		}
		if memLimit < math.MaxInt64 {
			total = min(total, int(max(memLimit-baseMemory, 0)/connectionMemory))
		}
		total = max(total, minDefaultConnections)
	}
	switch {
	case l.MaxConnectionsPerSource != nil:
		perSource = *l.MaxConnectionsPerSource
	case total > 0:
		perSource = max(total/4, 1)
	}
	return total, perSource
}

// connAdmission counts the open client connections of the proxy listeners,
// in all and per client address, and refuses one over the caps. It costs
// an accepted connection one atomic add (and, with a per-source cap, a
// map update under a mutex); a refused one costs the same undone.
type connAdmission struct {
	// max and perSource are the caps; 0 is off.
	max, perSource int64
	// open is the count of open connections (credgate_connections_open).
	open *atomic.Int64

	mu       sync.Mutex
	bySource map[netip.Addr]int64

	// lingering bounds the refused connections whose answer is being
	// delivered (refuse); beyond it they are closed at once.
	lingering chan struct{}
}

// maxLingering is how many refused connections may wait at once for their
// client to read the answer and close.
const maxLingering = 64

func newConnAdmission(total, perSource int, open *atomic.Int64) *connAdmission {
	return &connAdmission{max: int64(total), perSource: int64(perSource), open: open,
		bySource: map[netip.Addr]int64{}, lingering: make(chan struct{}, maxLingering)}
}

// admit counts a connection from src and returns "", or the limit that
// refuses it (limitGlobal, limitPerSource), counting nothing then.
func (a *connAdmission) admit(src netip.Addr) string {
	if !a.admitTotal() {
		return limitGlobal
	}
	if a.perSource > 0 && !a.admitSource(src) {
		a.open.Add(-1)
		return limitPerSource
	}
	return ""
}

// admitTotal counts a connection against max_connections only; false
// when over it (nothing counted).
func (a *connAdmission) admitTotal() bool {
	if n := a.open.Add(1); a.max > 0 && n > a.max {
		a.open.Add(-1)
		return false
	}
	return true
}

// admitSource counts a connection from src against the per-source cap
// (which must be on); false when over it (nothing counted). A listener
// that reads PROXY headers calls it once the header named the source.
func (a *connAdmission) admitSource(src netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.bySource[src]
	if n >= a.perSource {
		return false
	}
	a.bySource[src] = n + 1
	return true
}

// releaseSource uncounts what admitSource counted.
func (a *connAdmission) releaseSource(src netip.Addr) {
	a.mu.Lock()
	if n := a.bySource[src] - 1; n > 0 {
		a.bySource[src] = n
	} else {
		delete(a.bySource, src)
	}
	a.mu.Unlock()
}

// sources is the number of client addresses with an open connection (0
// without a per-source cap: they are not kept then).
func (a *connAdmission) sources() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.bySource)
}

// sourceKey is the address a connection counts against: the peer's IP
// address, an IPv4-mapped IPv6 address as its IPv4 address, without a
// zone. An IPv6 address counts alone, not its /64: Kubernetes gives every
// pod of a node an address from one prefix, and each pod is one source.
func sourceKey(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// admitListener is a proxy listener (listen, or tls_listen below its TLS
// layer) that admits each accepted connection or refuses it (refused),
// and wraps an admitted one so that its first Close releases it, whoever
// closes it (the HTTP server, a tunnel, the intercepting server after a
// hijack).
type admitListener struct {
	net.Listener
	adm *connAdmission
	// refused handles a connection over limit: it answers and closes it.
	refused func(c net.Conn, limit string, src netip.Addr)
	// sourceLater admits against max_connections only: the listener
	// reads PROXY headers, and the per-source cap counts the header's
	// source (acceptProxyHeader), not the load balancer's address.
	sourceLater bool
}

// Accept returns the next admitted connection.
func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.sourceLater {
			if !l.adm.admitTotal() {
				l.refused(c, limitGlobal, netip.Addr{})
				continue
			}
			return &countedConn{Conn: c, adm: l.adm}, nil
		}
		var src netip.Addr
		if l.adm.perSource > 0 {
			src = sourceKey(c.RemoteAddr())
		}
		if limit := l.adm.admit(src); limit != "" {
			l.refused(c, limit, src)
			continue
		}
		return &countedConn{Conn: c, adm: l.adm, src: src, sourced: l.adm.perSource > 0}, nil
	}
}

// countedConn releases its admission once, on the first Close.
type countedConn struct {
	net.Conn
	adm *connAdmission
	// src is the address counted against the per-source cap, when
	// sourced.
	src     netip.Addr
	sourced bool
	closed  atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.sourced {
			c.adm.releaseSource(c.src)
		}
		c.adm.open.Add(-1)
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

// connRefusals are what a refused connection gets and what counts it, for
// one listener.
type connRefusals struct {
	// listener names it: listen or tls_listen.
	listener string
	// answers are the raw HTTP answers by limit; nil on tls_listen,
	// where no HTTP can be spoken before a TLS handshake the gateway
	// does not spend on a refused connection.
	answers map[string][]byte
	// counters are credgate_connections_refused_total's by limit.
	counters map[string]interface{ Inc() }
	// lingering bounds the refused connections of the listener's
	// admission whose answer is being delivered.
	lingering chan struct{}
}

// lingerTimeout bounds how long a refused connection is kept open after
// its answer, for the client to read it and close: closing a socket
// whose client's request is unread sends a TCP reset, which may destroy
// the answer before the client reads it (net/http waits 500 ms too).
const lingerTimeout = 500 * time.Millisecond

// newConnRefusals builds listener's answers (plain: HTTP answers) and
// counters.
func (g *Gateway) newConnRefusals(listener string, plain bool, total, perSource int) *connRefusals {
	r := &connRefusals{listener: listener, counters: map[string]interface{ Inc() }{}, lingering: g.connAdmit.lingering}
	for _, limit := range []string{limitGlobal, limitPerSource} {
		r.counters[limit] = g.metrics.connsRefused.WithLabelValues(listener, limit)
	}
	if plain {
		r.answers = map[string][]byte{
			limitGlobal:    connectionAnswer(fmt.Sprintf("the gateway holds limits.max_connections (%d) client connections already; retry shortly, reusing a kept-alive connection, or ask its operator to raise the limit or add replicas", total)),
			limitPerSource: connectionAnswer(fmt.Sprintf("this client address holds limits.max_connections_per_source (%d) connections to the gateway already; reuse kept-alive connections and close idle ones, or ask the gateway's operator to raise the limit", perSource)),
		}
	}
	return r
}

// newAdminRefusals builds admin_listen's answer (plain: an HTTP answer;
// with admin.tls the connection is closed) and counter: one global cap,
// admin.max_connections, no per-source one (probes and scrapes come from
// few addresses, each of which must get in).
func (g *Gateway) newAdminRefusals(plain bool, total int) *connRefusals {
	r := &connRefusals{listener: "admin", lingering: g.adminAdmit.lingering,
		counters: map[string]interface{ Inc() }{limitGlobal: g.metrics.connsRefused.WithLabelValues("admin", limitGlobal)}}
	if plain {
		r.answers = map[string][]byte{
			limitGlobal: connectionAnswer(fmt.Sprintf("the admin listener holds admin.max_connections (%d) connections already; retry shortly, reusing a kept-alive connection, or ask the gateway's operator to raise admin.max_connections", total)),
		}
	}
	return r
}

// connectionAnswer is the raw HTTP/1.1 503 connection_limit answer with
// reason, sent before any request was read.
func connectionAnswer(reason string) []byte {
	f := newRefusal(http.StatusServiceUnavailable, codeConnectionLimit, reason, "")
	f.RetryAfter = 1
	var b bytes.Buffer
	_ = f.response(nil).Write(&b) // to memory: cannot fail
	return b.Bytes()
}

// refuseConnection answers and closes a connection over limit: counted,
// logged at most once per clientLogEvery, not audited (no request was
// read and no identity verified; a flood of connections must not flood
// the audit trail). On the plain listener the client gets a 503 with the
// reason code connection_limit, and the connection stays open for
// lingerTimeout at most for it to read that and close; on tls_listen the
// connection is closed at once.
func (g *Gateway) refuseConnection(r *connRefusals, c net.Conn, limit string, src netip.Addr) {
	r.counters[limit].Inc()
	if ok, held := g.clientLog.Allow(codeConnectionLimit); ok {
		attrs := []slog.Attr{slog.String("listener", r.listener), slog.String("limit", limit),
			slog.String("code", codeConnectionLimit), slog.Int("similar_refusals_not_logged", held)}
		if limit == limitPerSource {
			attrs = append(attrs, slog.String("source", src.String()))
		}
		g.log.LogAttrs(g.baseCtx, slog.LevelWarn, "client connection refused: connection limit reached", attrs...)
	}
	answer := r.answers[limit]
	if answer == nil {
		_ = c.Close()
		return
	}
	select {
	case r.lingering <- struct{}{}:
	default:
		// Too many refusals in progress: the answer is sent, and may be
		// lost to the reset the close causes.
		_ = c.SetWriteDeadline(time.Now().Add(lingerTimeout))
		_, _ = c.Write(answer)
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-r.lingering }()
		defer c.Close()
		// The answer waits for the client's first bytes (at most
		// lingerTimeout): an answer that arrives before a client wrote
		// its request is unsolicited to some clients (Go's Transport
		// drops it and fails the request with a transport error), which
		// would hide the reason from them.
		_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
		var first [1]byte
		_, _ = c.Read(first[:])
		_ = c.SetDeadline(time.Now().Add(lingerTimeout))
		if _, err := c.Write(answer); err != nil {
			return
		}
		_ = closeWrite(c)
		// Until the client closes (it read the answer), at most 64 KiB
		// or lingerTimeout.
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}
