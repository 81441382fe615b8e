// Package h1 is the HTTP/1.1 server of intercepted connections: the
// gateway hands it a client connection whose TLS handshake is done, and
// it serves the requests on it with an http.Handler (the gateway's
// serveIntercepted), the way net/http's server would. HTTP/2 clients are
// not served here; the gateway gives them to a net/http server.
//
// The package exists for two costs that a forward proxy pays on every
// connection and every request and net/http's server cannot shed:
//
//   - memory: an idle keep-alive connection holds no read or write buffer
//     here (net/http keeps 8 KiB of bufio buffers per connection for its
//     lifetime); the buffers come from the Server's pools while a request
//     is served;
//   - CPU: no background-read goroutine per request, no snapshot copy of
//     the response header, one read deadline change per request phase.
//
// What it keeps of net/http's server: request parsing (http.ReadRequest,
// the same parser, which validates header names and values and the body
// framing) and the header checks net/http makes before a handler runs,
// the header size limit (431), the read-header and idle timeouts,
// 100-continue, 1xx responses, chunked responses with trailers,
// HEAD/204/304 without a body, a bounded drain of an unread request body
// before the next request, Connection: close and HTTP/1.0, pipelined
// requests (served in order), the Hijacker that WebSocket upgrades use,
// http.ResponseController's Flush and SetReadDeadline (the gateway's body
// idle timeout aborts a stalled body read with it), a half-close before
// closing after an error answer, and a graceful drain on shutdown (idle
// connections are closed at once, busy ones after their response).
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
	"time"
)

// maxUnreadBody is how much of a request body the handler did not read
// the server reads and discards to keep the connection; with more left
// the connection is closed instead (net/http's maxPostHandlerReadBytes).
const maxUnreadBody = 256 << 10

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

	// readers and writers are the pooled per-request buffers.
	readers sync.Pool // *bufio.Reader
	writers sync.Pool // *bufio.Writer

	// The connections being served, for the drain on shutdown.
	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	shutdown atomic.Bool   // closing, read without the lock
	empty    chan struct{} // closed when conns drains during Shutdown
}

// Conn is what the server needs of a client connection: a *tls.Conn in
// the gateway, a *net.TCPConn in tests.
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
			_ = c.tc.Close()
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
				_ = c.tc.Close()
				n++
			}
			return n
		case <-tick.C:
			s.mu.Lock()
			for c := range s.conns {
				if c.idle.Load() {
					_ = c.tc.Close()
				}
			}
			s.mu.Unlock()
		}
	}
}

// Serve serves HTTP/1.1 requests on tc with h until the client closes it,
// a timeout, an error or Shutdown, and closes tc unless h hijacked it.
// Every request's context is ctx (the gateway's carries the tunnel):
// there is no cancellation per request. When tc is a *tls.Conn, its
// connection state is each request's TLS.
func (s *Server) Serve(ctx context.Context, tc Conn, h http.Handler) {
	c := &conn{s: s, tc: tc, ctx: ctx, handler: h, remote: tc.RemoteAddr().String()}
	if t, ok := tc.(*tls.Conn); ok {
		state := t.ConnectionState()
		c.tlsState = &state
	}
	c.src.tc = tc
	c.lr.R = &c.src
	c.serve()
}

// conn is one connection being served.
type conn struct {
	s       *Server
	tc      Conn
	ctx     context.Context
	handler http.Handler

	remote   string
	tlsState *tls.ConnectionState

	// src reads the connection, first returning the byte read while the
	// connection was idle; lr limits it while a header block is read.
	src source
	lr  io.LimitedReader
	br  *bufio.Reader // nil while idle
	bw  *bufio.Writer // nil while idle

	// wmu orders a 100 Continue or 1xx written from the transport's
	// goroutines against the handler's WriteHeader.
	wmu sync.Mutex

	idle     atomic.Bool
	hijacked bool
	// upgraded: a handler took the connection over (a WebSocket).
	upgraded atomic.Bool
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

func (c *conn) serve() {
	s := c.s
	if !s.add(c) {
		_ = c.tc.Close()
		return
	}
	defer s.remove(c)
	first := true
	for c.awaitRequest(first) && c.serveRequest() {
		first = false
	}
	if c.hijacked {
		return // the hijacker owns the connection and its buffers
	}
	_ = c.tc.Close()
	if c.br != nil {
		s.putReader(c.br)
	}
	if c.bw != nil {
		s.putWriter(c.bw)
	}
}

// awaitRequest waits for the first byte of the next request without
// holding buffers. It reports false when the connection is to close.
func (c *conn) awaitRequest(first bool) bool {
	s := c.s
	if c.br != nil && c.br.Buffered() > 0 {
		return !s.draining() // a pipelined request is waiting
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
		return false
	}
	_ = c.tc.SetReadDeadline(time.Now().Add(wait))
	n, _ := c.tc.Read(c.src.first[:])
	c.idle.Store(false)
	if n == 0 {
		return false
	}
	c.src.has = true
	return true
}

// serveRequest reads one request, serves it and finishes its response.
// It reports whether the connection stays open for another request.
func (c *conn) serveRequest() bool {
	s := c.s
	lim := &s.Limits
	_ = c.tc.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
	// Header bytes plus slack for the request line, as net/http allows.
	c.lr.N = int64(lim.MaxHeaderBytes) + 4096
	if c.br == nil {
		c.br = s.reader(&c.lr)
	}
	req, err := http.ReadRequest(c.br)
	if err != nil {
		switch {
		case c.lr.N <= 0:
			c.plainError(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large")
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isTimeout(err), errors.Is(err, net.ErrClosed):
			// The client went away or was too slow: nothing to answer.
		default:
			c.plainError(http.StatusBadRequest, "malformed HTTP request")
		}
		return false
	}
	c.lr.N = math.MaxInt64
	if req.ProtoMajor != 1 {
		c.plainError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return false
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		c.plainError(http.StatusBadRequest, "missing required Host header")
		return false
	}
	if msg := checkHeaderFields(req); msg != "" {
		c.plainError(http.StatusBadRequest, msg)
		return false
	}
	_ = c.tc.SetReadDeadline(time.Time{})

	w := &response{c: c, req: req, header: make(http.Header), contentLength: -1}
	w.wantsClose = req.Close || !req.ProtoAtLeast(1, 1)
	b := &body{rc: req.Body}
	if ex, ok := req.Header["Expect"]; ok {
		if len(ex) == 1 && strings.EqualFold(ex[0], "100-continue") && req.ProtoAtLeast(1, 1) && req.ContentLength != 0 {
			b.cont = w
		} else {
			c.plainError(http.StatusExpectationFailed, "unsupported Expect header")
			return false
		}
		delete(req.Header, "Expect")
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = b
	}
	// No cancellation per request: nothing reads the connection while the
	// handler runs (a client that leaves is noticed when a write fails),
	// so there is nothing to cancel on, and a cancelable context costs
	// every request an allocation and a channel the transport selects on.
	req = req.WithContext(c.ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	if c.bw == nil {
		c.bw = s.writer(c.tc)
	}

	c.handle(w, req)
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
	// Read what the handler left of the body (bounded) so that the next
	// request starts at a request line; with more left, close. A
	// transport goroutine may still be blocked reading it from a stalled
	// client: the deadline ends that read.
	if req.Body != http.NoBody && req.Body != nil && !b.eof.Load() {
		_ = c.tc.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
	}
	if !b.detach() {
		keep = false
	}
	if err := c.bw.Flush(); err != nil {
		keep = false
	}
	if keep && c.br.Buffered() == 0 {
		s.putWriter(c.bw)
		c.bw = nil
	}
	return keep && !s.draining()
}

// handle runs the handler, turning a panic into a closed connection as
// net/http does (the panic is logged without the request).
func (c *conn) handle(w *response, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			w.aborted = true
			if p != http.ErrAbortHandler && c.s.Log != nil {
				c.s.Log.Error("panic serving an intercepted request", slog.String("host", req.Host), slog.Any("panic", p))
			}
		}
	}()
	c.handler.ServeHTTP(w, req)
}

// plainError answers a request the server could not read, and the
// connection is closed after it.
func (c *conn) plainError(status int, msg string) {
	if c.bw == nil {
		c.bw = c.s.writer(c.tc)
	}
	_ = c.tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(msg)+1) + "\r\n\r\n" + msg + "\n")
	if c.bw.Flush() != nil {
		return
	}
	// The client may still be sending (an oversized header block):
	// closing with unread input would reset the connection before it
	// reads the answer. Half-close, then read and drop what comes for a
	// moment, as net/http does.
	_ = c.tc.CloseWrite()
	_ = c.tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c.tc, maxUnreadBody)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
