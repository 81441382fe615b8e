// Package h1 is the gateway's HTTP/1.1 server, of every client
// connection that speaks HTTP/1.1: the proxy listeners' (listen and
// tls_listen, with the gateway's serveProxy: absolute-form requests, and
// CONNECT, whose handler hijacks the connection) and the intercepted side
// of CONNECT tunnels (with serveIntercepted). The gateway hands it a
// client connection whose TLS handshake, if any, is done, and it serves
// the requests on it with an http.Handler, the way net/http's server
// would. HTTP/2 clients (inside tunnels) are not served here; the gateway
// gives them to a net/http server. One server for both sides means one
// reading of a request's framing and one answer to a request it cannot
// read (Refused), whichever listener it came to.
//
// The package exists for two costs that a forward proxy pays on every
// connection and every request and net/http's server cannot shed:
//
//   - memory: an idle keep-alive connection holds no read or write buffer
//     here (net/http keeps 8 KiB of bufio buffers per connection for its
//     lifetime); the buffers come from the Server's pools while a request
//     is served. And a connection idle for idleHandoff waits on no
//     goroutine of its own (Linux: it is parked on the server's epoll
//     instance, park_linux.go; elsewhere, and behind tls_listen's TLS, on
//     a new goroutine with a small stack) instead of the one that served
//     its requests, whose stack the request path grew (see idleHandoff);
//   - CPU: no background-read goroutine for a request answered quickly
//     (the connection is watched for the client leaving only once a
//     handler has run for backgroundReadDelay after the request was
//     read), no snapshot copy of the response header, one read deadline
//     change per request phase.
//
// What it keeps of net/http's server: request parsing (http.ReadRequest,
// the same parser, which validates header names and values and the body
// framing; the common bodiless request is read by a fast path that
// FuzzFastRequest holds to ReadRequest's reading) and the header checks net/http makes before a handler runs,
// the header size limit (431), the read-header and idle timeouts,
// 100-continue, 1xx responses, chunked responses with trailers,
// HEAD/204/304 without a body, a bounded drain of an unread request body
// before the next request (after the response is sent), a half-close and
// a bounded linger before closing on a client that may still be sending
// (an upload answered early), cancellation of the request's context when
// the client leaves while the handler runs, Connection: close and
// HTTP/1.0, pipelined
// requests (served in order), the Hijacker that WebSocket upgrades use,
// http.ResponseController's Flush and SetReadDeadline (the gateway's body
// idle timeout aborts a stalled body read with it), a half-close before
// closing after an error answer, and a graceful drain on shutdown (idle
// connections are closed at once, busy ones after their response).
//
// A request it answers itself, without the handler (one it cannot read,
// or will not serve: 400, 431, 505, 417), is reported to Server.Refused,
// whose answer fields and body it sends: the gateway audits and counts
// those as the handler's refusals are.
//
// It knows nothing of the gateway: it imports no request-path stage
// (internal/deptest keeps that true).
package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credgate/credgate/internal/panics"
	"github.com/credgate/credgate/internal/socket"
)

// maxUnreadBody is how much of a request body the handler did not read
// the server reads and discards to keep the connection; with more left
// the connection is closed instead (net/http's maxPostHandlerReadBytes).
const maxUnreadBody = 256 << 10

// lingerTimeout and lingerBytes bound how long and how much the server
// reads and discards after half-closing a connection whose client may
// still be sending (an upload answered before its end): closing with
// unread input would reset the connection, and a reset makes the
// client's TCP stack drop the answer it has not read yet (RFC 9112
// §9.6; net/http's closeWriteAndWait waits 500 ms without reading). A
// client that read the answer closes its side and ends the wait at once.
const (
	lingerTimeout = 2 * time.Second
	lingerBytes   = 32 << 20
)

// backgroundReadDelay is how long a handler runs, once the request is
// read, before the server reads the connection in the background to
// notice the client leaving (and cancel the request's context). Most
// requests end sooner and cost no goroutine.
const backgroundReadDelay = 50 * time.Millisecond

// idleHandoff is how long a kept-alive connection waits for its next
// request on the goroutine that served the last one. After that the wait
// moves to a new goroutine and the old one ends: serving a request grows
// a goroutine's stack to 8–16 KiB (TLS, the handler, the upstream round
// trip), Go halves an idle goroutine's stack at most once per GC cycle,
// and an idle gateway runs few cycles, so a thousand idle connections
// would keep 8–16 MiB of stacks. On Linux the connection is then parked
// (parker): its socket waits in an epoll instance of the server's, with
// no goroutine, and a new goroutine starts when it becomes readable.
// Where it cannot be parked (no socket: behind tls_listen's TLS; not
// Linux) a new goroutine waits for the socket to become readable without
// reading it (waitReadable: no TLS frames on its stack), starting at the
// runtime's average stack size, 2–4 KiB. A busy connection's next
// request comes sooner and costs nothing more; one that waited longer
// pays a goroutine start and its stack's growth, microseconds against
// the idle time.
const idleHandoff = 100 * time.Millisecond

// aLongTimeAgo is a deadline in the past: it aborts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Limits bound what a client may make the server wait for or hold.
type Limits struct {
	// MaxHeaderBytes bounds a request's header block (plus 4 KiB for the
	// request line, as net/http allows); over it the answer is 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the wait for a request's header block, for
	// the first request's first byte, and for the drain of an unread body.
	// It must be positive.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection; zero or less: ReadHeaderTimeout.
	IdleTimeout time.Duration
	// WriteIdleTimeout bounds one write to the client (of at most 16
	// KiB: larger ones are written in pieces): a client that takes none
	// of what the server writes (a response, a 1xx, a 100 Continue) for
	// this long fails the write, and the connection closes (the
	// handler's write returns the error, so its upstream request ends).
	// A write is cut between WriteIdleTimeout and 1.25 times it: the
	// deadline is moved once a quarter of it, not on every write.
	// Zero or less: no limit. A hijacked connection is its hijacker's to
	// bound.
	WriteIdleTimeout time.Duration
}

// Server serves HTTP/1.1 connections. Set its fields before the first
// Serve and do not change them after; a Server must not be copied after
// first use.
type Server struct {
	// Limits are the timeouts and the header size limit.
	Limits Limits
	// Log receives handler panics (without the request); nil discards them.
	Log *slog.Logger
	// Draining, when set, reports that the process is shutting down before
	// Shutdown is called: connections then close after their current
	// response instead of waiting for another request. Shutdown alone has
	// the same effect.
	Draining func() bool
	// Refused, when set, is called for every request the server answers
	// itself, without the handler, because it cannot read it or will not
	// serve it: a request line or header block that does not parse (400),
	// a header block over MaxHeaderBytes (431), an HTTP version other
	// than 1.x (505), no Host (400), an invalid header field (400), an
	// Expect other than 100-continue (417); and, with Refusal.Cut set and
	// nothing answered, for a request the client started (a byte of it
	// read) but did not finish the header block of:
	// it closed or reset the connection, or was too slow. It is not
	// called for a connection that ends or times out between requests
	// (nothing was asked). It runs on the connection's goroutine before
	// the answer is written; ctx is the connection's context (Serve's
	// ctx, cancelled when the connection ends). What it returns is added
	// to the answer.
	Refused func(ctx context.Context, r Refusal) Answer

	// readers and writers are the pooled per-request buffers.
	readers sync.Pool // *bufio.Reader
	writers sync.Pool // *bufio.Writer

	// handoffAfter replaces idleHandoff when positive (tests).
	handoffAfter time.Duration
	// handoffs counts idle waits handed off: parked or moved to a new
	// goroutine (tests).
	handoffs atomic.Int64
	// beforeIdleWait, when set, runs when a connection is handed off,
	// before it is parked or waits for its socket on a goroutine (tests).
	beforeIdleWait func()

	// parker holds the handed-off connections that wait on no goroutine
	// (park_linux.go).
	parker parker
	// watches holds the connections whose handler runs, for the
	// background read that notices a client leaving (watch.go).
	watches watchList

	// The connections being served, for the drain on shutdown.
	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	shutdown atomic.Bool   // closing, read without the lock
	empty    chan struct{} // closed when conns drains during Shutdown
}

// Refusal is a request the server answered itself (Server.Refused).
type Refusal struct {
	// Status is the answer's status; 0 when the request was cut short
	// (Cut): nothing is answered.
	Status int
	// Cut, when not empty, says how the client left its request's
	// header block unfinished: CutClosed or CutTimeout.
	Cut string
	// Reason is the text the server's own answer says ("malformed HTTP
	// request", "missing required Host header", ...): fixed words, never
	// bytes of the request.
	Reason string
	// Method and Path are the request's method and escaped path (without
	// query) once its request line and header block parsed; empty when
	// they did not.
	Method, Path string
	// RemoteAddr and TLS are the connection's, as a request's would be.
	RemoteAddr string
	TLS        *tls.ConnectionState
}

// Answer is what Server.Refused adds to the server's answer to a refused
// request. The server writes the status line, Connection: close and
// Content-Length itself.
type Answer struct {
	// Header holds fields added to the answer; a Content-Type in it
	// replaces the server's text/plain. Connection and Content-Length
	// in it are ignored.
	Header http.Header
	// Body, when not nil, replaces the server's text body.
	Body []byte
}

// Conn is what the server needs of a client connection: a *tls.Conn
// (a tunnel, tls_listen) or the accepted TCP connection (listen) in the
// gateway, a *net.TCPConn in tests.
type Conn interface {
	net.Conn
	CloseWrite() error
}

func (s *Server) draining() bool {
	return s.shutdown.Load() || s.Draining != nil && s.Draining()
}

func (s *Server) reader(r io.Reader) *bufio.Reader {
	if br, ok := s.readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, 4<<10)
}

func (s *Server) putReader(br *bufio.Reader) {
	br.Reset(nil)
	s.readers.Put(br)
}

func (s *Server) writer(w io.Writer) *bufio.Writer {
	if bw, ok := s.writers.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, 4<<10)
}

func (s *Server) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	s.writers.Put(bw)
}

// add registers c; it fails once shutdown began.
func (s *Server) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
}

// Shutdown refuses new connections, closes the idle ones and returns when
// the busy ones have finished their response or ctx is done; then it
// closes what is left and returns how many that were. A connection a
// handler hijacked (a WebSocket) is waited for but never closed here: it
// is its hijacker's to close.
func (s *Server) Shutdown(ctx context.Context) int {
	s.mu.Lock()
	s.closing = true
	s.shutdown.Store(true)
	for c := range s.conns {
		if c.idle.Load() {
			s.closeIdle(c)
		}
	}
	var ch chan struct{}
	if len(s.conns) > 0 {
		s.empty = make(chan struct{})
		ch = s.empty
	}
	s.mu.Unlock()
	if ch == nil {
		return 0
	}
	// A connection that was busy closes itself after its response; one
	// that went idle since is closed here, once a poll.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			return 0
		case <-ctx.Done():
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for c := range s.conns {
				if c.upgraded.Load() {
					continue // its hijacker closes it, and says why
				}
				s.closeIdle(c)
				n++
			}
			return n
		case <-tick.C:
			s.mu.Lock()
			for c := range s.conns {
				if c.idle.Load() {
					s.closeIdle(c)
				}
			}
			s.mu.Unlock()
		}
	}
}

// closeIdle closes c; a parked connection (park_linux.go), which no
// goroutine waits on, is taken back to end it.
func (s *Server) closeIdle(c *conn) {
	_ = c.tc.Close()
	if s.parker.takeConn(c) {
		go c.resume()
	}
}

// Serve serves HTTP/1.1 requests on tc with h until the client closes it,
// a timeout, an error or Shutdown, and closes tc unless h hijacked it.
// It returns then, or earlier: a connection idle for idleHandoff goes on
// being served by the server, parked or on a goroutine of its own
// (Shutdown still waits for it), and the caller's goroutine, with the
// stack serving grew, ends.
// Every request's context derives from ctx (the gateway's carries the
// tunnel) and is cancelled when the client closes or resets the
// connection while a handler runs (noticed once the request body is read
// and the handler has run for backgroundReadDelay); one context serves
// all the connection's requests, since a client that left ends them all.
// When tc is a *tls.Conn, its connection state is each request's TLS.
func (s *Server) Serve(ctx context.Context, tc Conn, h http.Handler) {
	ctx, cancel := context.WithCancel(ctx)
	c := &conn{s: s, tc: tc, ctx: ctx, cancel: cancel, handler: h, remote: tc.RemoteAddr().String()}
	if t, ok := tc.(*tls.Conn); ok {
		state := t.ConnectionState()
		c.tlsState = &state
	}
	c.src.tc = tc
	c.lr.R = &c.src
	c.hdr.lr = &c.lr
	c.out.c = c
	c.serve()
}

// conn is one connection being served.
type conn struct {
	s       *Server
	tc      Conn
	ctx     context.Context
	cancel  context.CancelFunc
	handler http.Handler

	remote   string
	tlsState *tls.ConnectionState

	// src reads the connection, first returning the byte read while the
	// connection was idle; lr limits it while a header block is read.
	src source
	lr  io.LimitedReader
	hdr headerReader  // what br reads: lr, scanned while a header block is read
	br  *bufio.Reader // nil while idle
	bw  *bufio.Writer // nil while idle; it writes out
	out sink          // writes tc under Limits.WriteIdleTimeout

	// idleUntil is when the current wait for a request ends (the idle or
	// read-header timeout); raw is the socket under tc for the handed-off
	// wait (waitReadable), looked up at the first handoff.
	idleUntil time.Time
	raw       syscall.RawConn
	rawLooked bool
	// parkID and parkTimer: the connection's current park, under the
	// parker's lock (park_linux.go); parkID is 0 when it is not parked.
	parkID    uint64
	parkTimer *time.Timer

	// wmu orders a 100 Continue or 1xx written from the transport's
	// goroutines against the handler's WriteHeader.
	wmu sync.Mutex

	idle     atomic.Bool
	hijacked bool
	// upgraded: a handler took the connection over (a WebSocket).
	upgraded atomic.Bool

	// The watch for the client leaving while a handler runs: armed once
	// the request is read, the server's watch list (watch.go) starts a
	// background read of one byte (kept in src for the next request)
	// after backgroundReadDelay.
	bgMu      sync.Mutex
	handling  bool          // a handler runs
	bgArmed   bool          // the connection is in the watch list or the read runs
	bgGen     atomic.Uint64 // counts the watches: a read started for an earlier one does not run
	bgReading bool          // the background read runs
	bgDone    chan struct{} // closed when the background read returns
	gone      bool          // the background read saw the client leave

	// The connection's place in the server's watch list, under its
	// lock, and since when it is watched (the list's mono time).
	wprev, wnext *conn
	wsince       time.Duration
}

// source reads the connection, after the byte the idle wait read.
type source struct {
	tc    io.Reader
	first [1]byte
	has   bool
}

func (s *source) Read(p []byte) (int, error) {
	if s.has && len(p) > 0 {
		p[0] = s.first[0]
		s.has = false
		return 1, nil
	}
	return s.tc.Read(p)
}

// sink is what a connection's bufio.Writer writes to: the connection,
// with its write deadline kept at least Limits.WriteIdleTimeout ahead of
// every write (Limits.WriteIdleTimeout). Moving a deadline costs a
// runtime timer update, so it is moved only when less than the limit is
// left, to 1.25 times the limit ahead: once a quarter of the limit at
// most, however many writes. Writes are ordered (the handler's, and the
// 1xx and 100 Continue under wmu before the final header): until needs
// no lock of its own.
type sink struct {
	c *conn
	// until is the write deadline in force; zero: none set.
	until time.Time
	// fixed: a deadline of the connection's own is in force (an error
	// answer's, a hijacker's none), not to be moved.
	fixed bool
}

func (s *sink) Write(p []byte) (int, error) {
	d := s.c.s.Limits.WriteIdleTimeout
	if d <= 0 || s.fixed {
		return s.c.tc.Write(p)
	}
	// In pieces of at most sinkPiece, each given the limit: a client
	// that keeps taking bytes, however slowly, is not cut in the middle
	// of a large write (bufio passes a write larger than its buffer
	// through whole).
	var n int
	for len(p) > 0 {
		if now := time.Now(); s.until.Sub(now) < d {
			s.until = now.Add(d + d/4)
			_ = s.c.tc.SetWriteDeadline(s.until)
		}
		m, err := s.c.tc.Write(p[:min(len(p), sinkPiece)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// sinkPiece is the most a sink writes under one deadline: a TLS record's
// payload, which crypto/tls writes to the socket one at a time anyway.
const sinkPiece = 16 << 10

// fix sets the connection's write deadline to t (zero: none) and keeps
// it: sink no longer moves it.
func (s *sink) fix(t time.Time) {
	s.fixed, s.until = true, t
	_ = s.c.tc.SetWriteDeadline(t)
}

// headerReader reads lr, and while on, scans what it reads for the
// framing fields of the header block being read.
type headerReader struct {
	lr   *io.LimitedReader
	on   bool
	scan framingScan
	// started: a byte of the header block was read; err: the read error
	// that ended the reading of the block, if one did. Both are reset
	// with scan.
	started bool
	err     error
}

func (h *headerReader) Read(p []byte) (int, error) {
	n, err := h.lr.Read(p)
	if h.on {
		h.scan.feed(p[:n])
		h.started = h.started || n > 0
		if err != nil && h.err == nil {
			h.err = err
		}
	}
	return n, err
}

// Kinds of a header block cut short (Refusal.Cut).
const (
	// CutClosed: the client closed or reset the connection.
	CutClosed = "closed"
	// CutTimeout: the client sent no more of it within
	// Limits.ReadHeaderTimeout.
	CutTimeout = "timeout"
)

// cut reports how the header block being read was cut short: "" when
// it was not (its blank line came, or no byte of a request came before
// the connection ended: nothing was asked), or when the gateway closed
// the connection itself. A block whose reading ended
// with a read error before its blank line is cut whatever the parser
// made of the bytes before it: a request line or field cut by the end of
// the stream is read as a whole line and may not parse, and over TLS the
// end comes as EOF with a close_notify and as another error without one.
func (h *headerReader) cut() string {
	switch {
	case !h.started || h.err == nil || h.scan.done || errors.Is(h.err, net.ErrClosed):
		// Not begun, not cut, or cut by the gateway's own close (a
		// shutdown, a tunnel a kill switch or a reload ended): not the
		// client's doing.
		return ""
	case isTimeout(h.err):
		return CutTimeout
	}
	return CutClosed
}

func (c *conn) serve() {
	if !c.s.add(c) {
		_ = c.tc.Close()
		c.cancel()
		return
	}
	c.run(true)
}

// run serves requests until the connection ends, or until it has been
// idle for idleHandoff: then a new goroutine waits for the next request
// (resume) and run returns.
func (c *conn) run(first bool) {
	for {
		switch c.awaitRequest(first) {
		case awaitClose:
			c.end()
			return
		case awaitHandoff:
			c.s.handoffs.Add(1)
			c.lookRaw()
			if c.s.beforeIdleWait != nil {
				c.s.beforeIdleWait()
			}
			if !c.s.parker.park(c) {
				go c.resume()
			}
			return
		}
		if !c.serveRequest() {
			c.end()
			return
		}
		first = false
	}
}

// resume is the handed-off wait for the next request, then run again.
func (c *conn) resume() {
	if !c.awaitHandedOff() || !c.serveRequest() {
		c.end()
		return
	}
	c.run(false)
}

// end closes the connection unless a handler hijacked it (the hijacker
// then owns it), returns its buffers, forgets it and cancels its context.
func (c *conn) end() {
	s := c.s
	if !c.hijacked {
		_ = c.tc.Close()
		if c.br != nil {
			s.putReader(c.br)
			c.br = nil
		}
		if c.bw != nil {
			s.putWriter(c.bw)
			c.bw = nil
		}
	}
	s.remove(c)
	c.cancel()
}

// What awaitRequest found.
type awaitResult int

const (
	awaitClose   awaitResult = iota // the connection is to close
	awaitReady                      // a request is arriving
	awaitHandoff                    // still idle after idleHandoff
)

// awaitRequest waits for the first byte of the next request without
// holding buffers. A connection that served a request (not first) and is
// still idle after idleHandoff, with time left to wait, is handed off:
// the caller starts resume.
func (c *conn) awaitRequest(first bool) awaitResult {
	s := c.s
	if c.br != nil && c.br.Buffered() > 0 || c.src.has {
		if s.draining() {
			return awaitClose
		}
		return awaitReady // a pipelined request is waiting
	}
	if c.br != nil {
		s.putReader(c.br)
		c.br = nil
	}
	wait := s.Limits.IdleTimeout
	if first || wait <= 0 {
		wait = s.Limits.ReadHeaderTimeout
	}
	c.idle.Store(true)
	if s.draining() {
		return awaitClose
	}
	now := time.Now()
	c.idleUntil = now.Add(wait)
	deadline := c.idleUntil
	// A first request is awaited on the goroutine Serve was called on,
	// whose stack has not grown yet: nothing to gain by a handoff.
	after := s.handoffAfter
	if after <= 0 {
		after = idleHandoff
	}
	handoff := !first && after < wait
	if handoff {
		deadline = now.Add(after)
	}
	_ = c.tc.SetReadDeadline(deadline)
	n, err := c.tc.Read(c.src.first[:])
	if n == 0 && handoff && isTimeout(err) {
		// Still idle. A TLS connection that timed out holds no complete
		// record: what comes next comes from the socket.
		return awaitHandoff
	}
	c.idle.Store(false)
	if n == 0 {
		return awaitClose
	}
	c.src.has = true
	return awaitReady
}

// awaitHandedOff finishes awaitRequest's wait on the goroutine resume
// started, until idleUntil: first for the socket to become readable
// (waitReadable), then for the request's first byte. It reports false
// when the connection is to close.
func (c *conn) awaitHandedOff() bool {
	if c.s.draining() {
		c.idle.Store(false)
		return false
	}
	_ = c.tc.SetReadDeadline(c.idleUntil)
	c.waitReadable()
	n, _ := c.tc.Read(c.src.first[:])
	c.idle.Store(false)
	if n == 0 {
		return false
	}
	c.src.has = true
	return true
}

// waitReadable returns when the socket under the connection has something
// to read, is closed or reset, or its read deadline has passed, without
// reading: the goroutine waits with the poller's few frames on its stack,
// not the TLS record layer's. It returns at once when the connection
// exposes no socket (the caller's read then waits instead).
func (c *conn) waitReadable() {
	c.lookRaw()
	if c.raw == nil {
		return
	}
	// The poller calls f first, and again each time the socket becomes
	// readable, until it returns true. f must look at the socket itself:
	// RawRead clears a readiness the poller noted before it was called,
	// so data that arrived since the last read signals nothing more.
	_ = c.raw.Read(socket.Readable)
}

// lookRaw looks up the socket under the connection at its first
// handoff (socket.Raw); nil when there is none to wait on.
func (c *conn) lookRaw() {
	if !c.rawLooked {
		c.rawLooked = true
		c.raw = socket.Raw(c.tc)
	}
}

// serveRequest reads one request, serves it and finishes its response.
// It reports whether the connection stays open for another request.
func (c *conn) serveRequest() bool {
	s := c.s
	lim := &s.Limits
	_ = c.tc.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
	// Header bytes plus slack for the request line, as net/http allows.
	c.lr.N = int64(lim.MaxHeaderBytes) + 4096
	// The header block starts with what br holds already (a pipelined
	// request) and goes on with what it reads.
	c.hdr.scan.reset()
	c.hdr.started, c.hdr.err = false, nil
	if c.br == nil {
		c.br = s.reader(&c.hdr)
	} else if n := c.br.Buffered(); n > 0 {
		held, _ := c.br.Peek(n)
		c.hdr.scan.feed(held)
		c.hdr.started = true
	}
	c.hdr.on = true
	// The common request by the fast path (fastrequest.go), any other by
	// ReadRequest.
	var req *http.Request
	fr := readFast(c.br, lim.MaxHeaderBytes+4096)
	var err error
	if fr != nil {
		req = &fr.req
	} else {
		req, err = http.ReadRequest(c.br)
	}
	c.hdr.on = false
	if err != nil {
		switch cut := c.hdr.cut(); {
		case c.lr.N <= 0:
			c.plainError(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large", nil)
		case cut != "":
			// The client started a request and went away, or was too
			// slow: nothing to answer, but Refused hears of it.
			c.cutShort(cut)
		case c.hdr.err != nil && !c.hdr.scan.done:
			// The reading ended before the block did, and not by the
			// client (the gateway closed the connection) or before a
			// byte: whatever the parser made of a part, nothing to
			// answer.
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isTimeout(err), errors.Is(err, net.ErrClosed):
			// The client went away or was too slow before a request
			// started: nothing was asked.
		default:
			c.plainError(http.StatusBadRequest, "malformed HTTP request", nil)
		}
		return false
	}
	c.lr.N = math.MaxInt64
	if req.ProtoMajor != 1 {
		c.plainError(http.StatusHTTPVersionNotSupported, "unsupported protocol version", nil)
		return false
	}
	// An HTTP/1.1 request needs a Host field, even in absolute form
	// (where req.Host is the target's), except a CONNECT, whose target
	// is the authority (net/http's rule).
	if req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect && (req.Host == "" || !c.hdr.scan.host) {
		c.plainError(http.StatusBadRequest, "missing required Host header", req)
		return false
	}
	if msg := checkHeaderFields(req); msg != "" {
		c.plainError(http.StatusBadRequest, msg, req)
		return false
	}
	if c.hdr.scan.both() {
		// Content-Length and Transfer-Encoding: the body was framed by
		// the chunks (http.ReadRequest refuses any other coding), and
		// the connection closes after the response (RFC 9112 §6.1), as
		// ReadRequest marks it itself once golang/go#80942's fix is in
		// the toolchain (it is not in Go 1.26).
		req.Close = true
	}

	// The response and the body's wrapper are the fast request's own
	// (one allocation with it); never reused for another request.
	var w *response
	if fr != nil {
		w = &fr.w
	} else {
		w = new(response)
	}
	*w = response{c: c, req: req, contentLength: -1} // the header made on first use (Header, AdoptHeader)
	w.wantsClose = req.Close || !req.ProtoAtLeast(1, 1)
	var b *body
	if hasBody(req.Body) {
		if fr != nil {
			b = &fr.b
		} else {
			b = new(body)
		}
		*b = body{rc: req.Body, c: c}
		req.Body, w.body = b, b
		// The body is read without the header's deadline
		// (limits.body_idle_timeout is the gateway's, per read). A
		// request without a body leaves the deadline be: nothing reads
		// the connection until the next request's wait sets its own, and
		// the background read and Hijack clear it before they read.
		_ = c.tc.SetReadDeadline(time.Time{})
	}
	if ex, ok := req.Header["Expect"]; ok {
		switch {
		case len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") || !req.ProtoAtLeast(1, 1):
			c.plainError(http.StatusExpectationFailed, "unsupported Expect header", req)
			return false
		case b != nil:
			// End to end: the field stays for the handler to pass on,
			// and 100 Continue goes to the client when the body is
			// first read (the transport reads it when the upstream
			// asks for it).
			b.cont = w
		default:
			delete(req.Header, "Expect") // no body to wait for
		}
	}
	// One context for the connection's requests, cancelled when the
	// client leaves (watch): no allocation per request. req is the
	// server's own (read just now; w holds the same pointer), so it takes
	// the context in place: WithContext's copy, inlined, stays on the
	// stack.
	*req = *req.WithContext(c.ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	if c.bw == nil {
		c.bw = s.writer(&c.out)
	}

	c.bgMu.Lock()
	c.handling = true
	c.bgMu.Unlock()
	if b == nil {
		c.watch() // the request is read
	}
	c.handle(w, req)
	c.stopWatching()
	if w.hijacked {
		c.hijacked = true
		return false
	}
	if w.aborted {
		// The response broke off: send what was written, then close
		// without ending the body, so the client sees it incomplete.
		if w.wroteHeader {
			_ = c.bw.Flush()
		}
		return false
	}
	keep := w.finish()
	// The response goes out before anything waits for the rest of the
	// body: a client still uploading reads it while it sends.
	if err := c.bw.Flush(); err != nil || c.isGone() {
		keep = false
	}
	if b != nil && !c.finishBody(b, keep) {
		keep = false
	}
	if keep && c.br.Buffered() == 0 {
		s.putWriter(c.bw)
		c.bw = nil
	}
	return keep && !s.draining()
}

// handle runs the handler, turning a panic into a closed connection as
// net/http does (the panic is logged without the request, and without
// its value: internal/panics).
func (c *conn) handle(w *response, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			w.aborted = true
			if p != http.ErrAbortHandler && c.s.Log != nil {
				// Never the value: it may hold a credential.
				c.s.Log.Error("panic serving a request", slog.String("host", req.Host), slog.String("panic", panics.Describe(p)), slog.String("where", panics.Where(1)))
			}
		}
	}()
	c.handler.ServeHTTP(w, req)
}

// plainError answers a request the server could not read or will not
// serve, and the connection is closed after it. req is the request when
// it parsed, for Refused; nil otherwise.
func (c *conn) plainError(status int, msg string, req *http.Request) {
	body := msg + "\n"
	var extra http.Header
	if c.s.Refused != nil {
		r := Refusal{Status: status, Reason: msg, RemoteAddr: c.remote, TLS: c.tlsState}
		if req != nil {
			r.Method, r.Path = req.Method, req.URL.EscapedPath()
		}
		a := c.s.Refused(c.ctx, r)
		extra = a.Header
		if a.Body != nil {
			body = string(a.Body)
		}
	}
	if c.bw == nil {
		c.bw = c.s.writer(&c.out)
	}
	c.out.fix(time.Now().Add(5 * time.Second))
	_, _ = c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	if _, ok := extra["Content-Type"]; !ok {
		_, _ = c.bw.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	}
	// Write drops CR and LF from values: a field cannot end the head.
	_ = extra.WriteSubset(c.bw, answerOwnFields)
	_, _ = c.bw.WriteString("Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	if c.bw.Flush() != nil {
		return
	}
	// The client may still be sending (an oversized header block).
	c.linger()
}

// cutShort tells Refused of a request whose header block the client did
// not finish (cut is CutClosed or CutTimeout); nothing is answered: the
// client is gone, or is too slow to be waited for.
func (c *conn) cutShort(cut string) {
	if c.s.Refused == nil {
		return
	}
	reason := "the client closed the connection before its request's header block ended"
	if cut == CutTimeout {
		reason = "the client did not finish its request's header block within the read header timeout"
	}
	c.s.Refused(c.ctx, Refusal{Reason: reason, Cut: cut, RemoteAddr: c.remote, TLS: c.tlsState})
}

// answerOwnFields are the fields of a refusal's answer the server writes
// itself, whatever Refused returns.
var answerOwnFields = map[string]bool{"Connection": true, "Content-Length": true, "Transfer-Encoding": true}

// finishBody deals with what the handler left of the request body once
// the response is sent, and reports whether the connection can carry
// another request. With keep, up to maxUnreadBody of it is read and
// discarded so that the next request starts at a request line (a
// transport goroutine may still be blocked reading it from a stalled
// client: the deadline ends that read). Otherwise, or when more is left,
// the connection closes after a linger, so that a client still sending
// reads the answer instead of a reset.
func (c *conn) finishBody(b *body, keep bool) bool {
	if b.eof.Load() {
		b.detach(false)
		return true
	}
	if keep && b.drainable() {
		_ = c.tc.SetReadDeadline(time.Now().Add(c.s.Limits.ReadHeaderTimeout))
		if b.detach(true) {
			return true
		}
	} else {
		// Abort a read in flight, then take the body from the handler.
		_ = c.tc.SetReadDeadline(aLongTimeAgo)
		b.detach(false)
	}
	if !c.isGone() {
		c.linger()
	}
	return false
}

// linger half-closes the connection (a TLS close_notify, and a TCP FIN
// when the connection under TLS can send one) and reads and discards
// what the client still sends, until it closes its side or lingerTimeout
// or lingerBytes, before the caller closes it (see lingerTimeout).
func (c *conn) linger() {
	_ = c.tc.CloseWrite()
	if t, ok := c.tc.(*tls.Conn); ok {
		if cw, ok := t.NetConn().(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	_ = c.tc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.tc, lingerBytes)
}

// watch arms the watch for the client leaving, once the request is read
// and while its handler runs: after backgroundReadDelay a background read
// of the connection starts (backgroundRead), from the server's watch
// list. It is called by the server for a request without a body, and by
// the body at its end (from whichever goroutine reads it).
func (c *conn) watch() {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if !c.handling || c.bgArmed || c.gone {
		return
	}
	c.bgArmed = true
	c.bgGen.Add(1)
	c.s.watches.add(c)
}

// backgroundRead reads one byte of the connection while a handler runs
// (net/http's startBackgroundRead): a byte is the start of a pipelined
// request, kept for it; the end of the stream or an error other than a
// timeout means the client left, and cancels the connection's context
// so that the handler's upstream request ends. gen is the watch it was
// started for: a later one's handler has not run for the delay yet.
func (c *conn) backgroundRead(gen uint64) {
	c.bgMu.Lock()
	if !c.bgArmed || gen != c.bgGen.Load() || c.bgReading || c.br != nil && c.br.Buffered() > 0 || c.src.has {
		// Stopped meanwhile, or a pipelined request is already here.
		c.bgMu.Unlock()
		return
	}
	_ = c.tc.SetReadDeadline(time.Time{})
	c.bgReading = true
	c.bgDone = make(chan struct{})
	c.bgMu.Unlock()
	n, err := c.tc.Read(c.src.first[:])
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	c.bgReading = false
	close(c.bgDone)
	switch {
	case n > 0:
		c.src.has = true
	case err != nil && !isTimeout(err):
		c.gone = true
		c.cancel()
	}
}

// stopWatching ends the watch when the handler returns (or hijacks the
// connection): a background read in progress is aborted and waited for,
// so that the caller alone reads the connection afterwards.
func (c *conn) stopWatching() {
	c.bgMu.Lock()
	c.handling = false
	if !c.bgArmed {
		c.bgMu.Unlock()
		return
	}
	c.bgArmed = false
	c.s.watches.remove(c)
	if !c.bgReading {
		c.bgMu.Unlock()
		return
	}
	_ = c.tc.SetReadDeadline(aLongTimeAgo)
	done := c.bgDone
	c.bgMu.Unlock()
	<-done
	_ = c.tc.SetReadDeadline(time.Time{})
}

// isGone reports whether the background read saw the client leave.
func (c *conn) isGone() bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	return c.gone
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
