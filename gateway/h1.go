package gateway

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

	"golang.org/x/net/http/httpguts"
)

// The HTTP/1.1 side of interception. A client that negotiates HTTP/1.1
// (or no ALPN) inside an intercepted tunnel is served by this loop instead
// of net/http's server; HTTP/2 clients still go to the net/http server
// (mitmSrv). The loop exists for two costs that a forward proxy pays on
// every connection and every request and net/http's server cannot shed:
//
//   - memory: an idle keep-alive connection holds no read or write buffer
//     here (net/http keeps 8 KiB of bufio buffers per connection for its
//     lifetime); the buffers come from pools while a request is served;
//   - CPU: no background-read goroutine per request, no snapshot copy of
//     the response header, one read deadline change per request phase.
//
// What it keeps of net/http's server: request parsing (http.ReadRequest,
// the same parser, which validates header names and values and the body
// framing), the header size limit (431), the read-header and idle
// timeouts, 100-continue, 1xx responses, chunked responses with
// trailers, HEAD/204/304 without a body, a bounded drain of an unread
// request body before the next request, Connection: close and HTTP/1.0,
// pipelined requests (served in order), the Hijacker that WebSocket
// upgrades use, and a graceful drain on shutdown (idle connections are
// closed at once, busy ones after their response).

// maxUnreadBody is how much of a request body the handler did not read
// the loop reads and discards to keep the connection; with more left the
// connection is closed instead (net/http's maxPostHandlerReadBytes).
const maxUnreadBody = 256 << 10

// h1Buffers are the pooled per-request read and write buffers.
type h1Buffers struct {
	readers sync.Pool // *bufio.Reader
	writers sync.Pool // *bufio.Writer
}

func (p *h1Buffers) reader(r io.Reader) *bufio.Reader {
	if br, ok := p.readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, 4<<10)
}

func (p *h1Buffers) putReader(br *bufio.Reader) {
	br.Reset(nil)
	p.readers.Put(br)
}

func (p *h1Buffers) writer(w io.Writer) *bufio.Writer {
	if bw, ok := p.writers.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, 4<<10)
}

func (p *h1Buffers) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	p.writers.Put(bw)
}

// h1Set tracks the connections the loop serves, for the drain on
// shutdown.
type h1Set struct {
	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	closing bool
	empty   chan struct{} // closed when the set drains during shutdown
}

// add registers c; it fails once shutdown began.
func (s *h1Set) add(c *h1Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*h1Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *h1Set) remove(c *h1Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
}

// shutdown refuses new connections, closes the idle ones and returns when
// the busy ones have finished their response or ctx is done; then it
// closes what is left and returns how many that were.
func (s *h1Set) shutdown(ctx context.Context) int {
	s.mu.Lock()
	s.closing = true
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
					continue // closed by the longSet, which says why
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

// h1Transport is what the loop needs of the client connection; a
// *tls.Conn in the gateway.
type h1Transport interface {
	net.Conn
	CloseWrite() error
}

// h1Conn is one intercepted HTTP/1.1 connection.
type h1Conn struct {
	g       *Gateway
	tc      h1Transport
	ctx     context.Context // carries the tunnel (tunnelKey)
	handler http.HandlerFunc

	remote   string
	tlsState *tls.ConnectionState

	// src reads the connection, first returning the byte read while the
	// connection was idle; lr limits it while a header block is read.
	src h1Source
	lr  io.LimitedReader
	br  *bufio.Reader // nil while idle
	bw  *bufio.Writer // nil while idle

	// wmu orders a 100 Continue or 1xx written from the transport's
	// goroutines against the handler's WriteHeader.
	wmu sync.Mutex

	idle     atomic.Bool
	hijacked bool
	// upgraded: a handler took the connection over (a WebSocket); it is
	// a long-lived connection, closed by the gateway's longSet.
	upgraded atomic.Bool
}

// h1Source reads the TLS connection, after the byte the idle wait read.
type h1Source struct {
	tc    io.Reader
	first [1]byte
	has   bool
}

func (s *h1Source) Read(p []byte) (int, error) {
	if s.has && len(p) > 0 {
		p[0] = s.first[0]
		s.has = false
		return 1, nil
	}
	return s.tc.Read(p)
}

// serveH1 serves HTTP/1.1 requests on an intercepted connection whose
// TLS handshake is done, until the client closes it, a timeout, an error
// or shutdown. It closes tc unless a handler hijacked it.
func (g *Gateway) serveH1(tc *tls.Conn, tun *tunnelConn) {
	state := tc.ConnectionState()
	c := g.newH1Conn(tc, context.WithValue(g.baseCtx, tunnelKey, tun), g.serveIntercepted)
	c.remote = tun.RemoteAddr().String()
	c.tlsState = &state
	c.serve()
}

func (g *Gateway) newH1Conn(tc h1Transport, ctx context.Context, h http.HandlerFunc) *h1Conn {
	c := &h1Conn{g: g, tc: tc, ctx: ctx, handler: h}
	c.src.tc = tc
	c.lr.R = &c.src
	return c
}

func (c *h1Conn) serve() {
	g := c.g
	if !g.h1.add(c) {
		_ = c.tc.Close()
		return
	}
	defer g.h1.remove(c)
	first := true
	for c.awaitRequest(first) && c.serveRequest() {
		first = false
	}
	if c.hijacked {
		return // the hijacker owns the connection and its buffers
	}
	_ = c.tc.Close()
	if c.br != nil {
		g.h1buf.putReader(c.br)
	}
	if c.bw != nil {
		g.h1buf.putWriter(c.bw)
	}
}

// awaitRequest waits for the first byte of the next request without
// holding buffers. It reports false when the connection is to close.
func (c *h1Conn) awaitRequest(first bool) bool {
	if c.br != nil && c.br.Buffered() > 0 {
		return !c.g.draining.Load() // a pipelined request is waiting
	}
	if c.br != nil {
		c.g.h1buf.putReader(c.br)
		c.br = nil
	}
	lim := c.g.cfg.Limits
	wait := lim.IdleTimeout.D()
	if first || wait <= 0 {
		wait = lim.ReadHeaderTimeout.D()
	}
	c.idle.Store(true)
	if c.g.draining.Load() {
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
func (c *h1Conn) serveRequest() bool {
	g := c.g
	lim := g.cfg.Limits
	_ = c.tc.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout.D()))
	// Header bytes plus slack for the request line, as net/http allows.
	c.lr.N = int64(lim.MaxHeaderBytes) + 4096
	if c.br == nil {
		c.br = g.h1buf.reader(&c.lr)
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

	w := &h1Writer{c: c, req: req, header: make(http.Header), contentLength: -1}
	w.wantsClose = req.Close || !req.ProtoAtLeast(1, 1)
	body := &h1Body{rc: req.Body}
	if ex, ok := req.Header["Expect"]; ok {
		if len(ex) == 1 && strings.EqualFold(ex[0], "100-continue") && req.ProtoAtLeast(1, 1) && req.ContentLength != 0 {
			body.cont = w
		} else {
			c.plainError(http.StatusExpectationFailed, "unsupported Expect header")
			return false
		}
		delete(req.Header, "Expect")
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = body
	}
	// No cancellation per request: nothing reads the connection while the
	// handler runs (a client that leaves is noticed when a write fails),
	// so there is nothing to cancel on, and a cancelable context costs
	// every request an allocation and a channel the transport selects on.
	req = req.WithContext(c.ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	if c.bw == nil {
		c.bw = g.h1buf.writer(c.tc)
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
	if req.Body != http.NoBody && req.Body != nil && !body.eof.Load() {
		_ = c.tc.SetReadDeadline(time.Now().Add(lim.ReadHeaderTimeout.D()))
	}
	if !body.detach() {
		keep = false
	}
	if err := c.bw.Flush(); err != nil {
		keep = false
	}
	if keep && c.br.Buffered() == 0 {
		g.h1buf.putWriter(c.bw)
		c.bw = nil
	}
	return keep && !g.draining.Load()
}

// handle runs the handler, turning a panic into a closed connection as
// net/http does (the panic is logged without the request).
func (c *h1Conn) handle(w *h1Writer, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			w.aborted = true
			if p != http.ErrAbortHandler {
				c.g.log.Error("panic serving an intercepted request", slog.String("host", req.Host), slog.Any("panic", p))
			}
		}
	}()
	c.handler(w, req)
}

// plainError answers a request the loop could not read, and the
// connection is closed after it.
func (c *h1Conn) plainError(status int, msg string) {
	if c.bw == nil {
		c.bw = c.g.h1buf.writer(c.tc)
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

// errBodyDetached is what a request body read returns after the handler
// finished (a transport goroutine still sending it upstream).
var errBodyDetached = errors.New("gateway: request body read after the handler returned")

// h1Body is the request body the handler sees. Its Close does not drain
// (net/http's body would read an unbounded rest); after the handler the
// loop detaches it, drains it itself within maxUnreadBody and any late
// read from a transport goroutine fails.
type h1Body struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	eof      atomic.Bool
	detached bool
	// broken: a read failed (a timeout, the client gone) or was aborted
	// (SetReadDeadline in the past); what is left cannot be drained.
	broken atomic.Bool
	// cont, when set, sends 100 Continue before the first read.
	cont *h1Writer
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errBodyDetached
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	if b.cont != nil {
		b.cont.writeContinue()
		b.cont = nil
	}
	n, err := b.rc.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		b.eof.Store(true)
	case err != nil:
		b.broken.Store(true)
	}
	return n, err
}

// Close is a no-op: the loop decides what happens to an unread rest.
func (b *h1Body) Close() error { return nil }

// detach ends the handler's access to the body and drains what is left
// within maxUnreadBody. It reports whether the body was read to its end.
func (b *h1Body) detach() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return b.eof.Load()
	}
	b.detached = true
	if b.rc == nil || b.rc == http.NoBody || b.eof.Load() {
		return true
	}
	if b.broken.Load() {
		return false
	}
	if b.cont != nil {
		// 100 Continue was never sent: the client has not sent the body
		// and may never; the connection cannot be reused.
		return false
	}
	n, err := io.CopyN(io.Discard, b.rc, maxUnreadBody+1)
	if errors.Is(err, io.EOF) && n <= maxUnreadBody {
		b.eof.Store(true)
	}
	return b.eof.Load()
}

// h1Writer is the http.ResponseWriter of one request on an h1Conn.
type h1Writer struct {
	c      *h1Conn
	req    *http.Request
	header http.Header

	wroteHeader   bool
	status        int
	noBody        bool // HEAD, 204, 304
	chunked       bool
	contentLength int64 // -1: unknown
	written       int64
	trailers      []string // declared in the Trailer header

	wantsClose bool // the request asked for it (or is HTTP/1.0)
	closeAfter bool // the connection closes after this response
	hijacked   bool
	aborted    bool // the handler panicked (http.ErrAbortHandler)
	continued  bool // 100 Continue was sent
	err        error
}

// Header implements http.ResponseWriter.
func (w *h1Writer) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter.
func (w *h1Writer) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational response (103 Early Hints, a 100 the upstream
		// sent): written at once; the final response follows.
		if code == http.StatusContinue && w.continued {
			return
		}
		w.writeStatusLine(code)
		writeHeaderFields(w.c.bw, w.header)
		_, _ = w.c.bw.WriteString("\r\n")
		w.setErr(w.c.bw.Flush())
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(h, "Content-Length")
		}
	}
	delete(h, "Transfer-Encoding")
	if code == http.StatusNoContent {
		delete(h, "Content-Length")
		w.contentLength = -1
	}
	if tr := h["Trailer"]; len(tr) > 0 {
		for _, v := range tr {
			for _, k := range strings.Split(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
				}
			}
		}
	}
	switch {
	case w.noBody || code == http.StatusSwitchingProtocols:
	case w.contentLength >= 0 && len(w.trailers) == 0:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		delete(h, "Content-Length")
		w.contentLength = -1
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		// HTTP/1.0 without a length: the end of the body is the close.
		w.closeAfter = true
	}
	if !w.chunked {
		delete(h, "Trailer")
		w.trailers = nil
	}
	for _, v := range h["Connection"] {
		if strings.EqualFold(strings.TrimSpace(v), "close") {
			w.closeAfter = true
		}
	}
	if w.wantsClose || w.c.g.draining.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		h["Connection"] = []string{"close"}
	} else {
		delete(h, "Connection")
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	w.writeStatusLine(code)
	writeHeaderFields(w.c.bw, h)
	_, err := w.c.bw.WriteString("\r\n")
	w.setErr(err)
}

// writeHeaderFields writes the header section, unsorted (field order is
// not significant between different names). A CR or LF in a value becomes
// a space and a field whose name is not a valid token is dropped, so
// nothing an upstream sends can split the response; http.TrailerPrefix
// keys are left for the trailer section.
func writeHeaderFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			_, _ = bw.WriteString(strings.TrimSpace(v))
			_, _ = bw.WriteString("\r\n")
		}
	}
}

// validFieldName reports whether k is an RFC 9110 token (and so not a
// http.TrailerPrefix key, whose ':' is not a token character).
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func (w *h1Writer) writeStatusLine(code int) {
	bw := w.c.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	var num [3]byte
	_, _ = bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(code))
	_, _ = bw.WriteString("\r\n")
}

// writeContinue answers Expect: 100-continue when the handler first reads
// the body, unless the final response has already begun.
func (w *h1Writer) writeContinue() {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if w.wroteHeader || w.continued || w.hijacked {
		return
	}
	w.continued = true
	_, _ = w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	w.setErr(w.c.bw.Flush())
}

func (w *h1Writer) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
	}
}

// Write implements http.ResponseWriter.
func (w *h1Writer) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	bw := w.c.bw
	if w.chunked {
		var hex [16]byte
		_, _ = bw.Write(strconv.AppendInt(hex[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	w.setErr(err)
	return n, err
}

// FlushError sends what is buffered to the client (http.ResponseController).
func (w *h1Writer) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	err := w.c.bw.Flush()
	w.setErr(err)
	return err
}

// Flush implements http.Flusher.
func (w *h1Writer) Flush() { _ = w.FlushError() }

// SetReadDeadline sets the client connection's read deadline, for
// http.ResponseController: limits.body_idle_timeout aborts a stalled body
// read with it.
func (w *h1Writer) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		// An abort: the rest of the body is not drained.
		if b, ok := w.req.Body.(*h1Body); ok {
			b.broken.Store(true)
		}
	}
	return w.c.tc.SetReadDeadline(t)
}

// Hijack implements http.Hijacker, for protocol upgrades (WebSocket).
// The buffered reader holds what the client sent after the request.
func (w *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("gateway: hijack after the response header was written")
	}
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.c.wmu.Lock()
	w.hijacked = true
	w.c.wmu.Unlock()
	// The request body is done with: reads of it must not race the
	// hijacker's reads of the connection.
	if b, ok := w.req.Body.(*h1Body); ok {
		b.mu.Lock()
		b.detached = true
		b.mu.Unlock()
	}
	c := w.c
	c.upgraded.Store(true)
	c.lr.N = math.MaxInt64
	brw := bufio.NewReadWriter(c.br, c.bw)
	return c.tc, brw, nil
}

// finish completes the response after the handler returned and reports
// whether the connection can carry another request.
func (w *h1Writer) finish() bool {
	if !w.wroteHeader {
		if w.header.Get("Content-Length") == "" && w.req.Method != http.MethodHead {
			w.header.Set("Content-Length", "0")
		}
		w.WriteHeader(http.StatusOK)
	}
	bw := w.c.bw
	switch {
	case w.chunked:
		_, _ = bw.WriteString("0\r\n")
		w.writeTrailers()
		_, err := bw.WriteString("\r\n")
		w.setErr(err)
	case w.contentLength >= 0 && !w.noBody && w.written != w.contentLength:
		// The handler wrote less than it declared (an upstream that
		// broke off): the client must see the connection end.
		w.closeAfter = true
	}
	return !w.closeAfter && w.err == nil
}

// writeTrailers writes the declared trailers and the http.TrailerPrefix
// ones that the handler set after the body.
func (w *h1Writer) writeTrailers() {
	t := http.Header{}
	for _, k := range w.trailers {
		if vv, ok := w.header[k]; ok {
			t[k] = vv
		}
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			t[http.CanonicalHeaderKey(strings.TrimPrefix(k, http.TrailerPrefix))] = vv
		}
	}
	writeHeaderFields(w.c.bw, t)
}

// checkHeaderFields validates a parsed request's header fields as
// net/http's server does before any handler runs (http.ReadRequest does
// not): one Host field with a valid value, field names that are tokens,
// values without control characters. It returns what is wrong, or "".
func checkHeaderFields(req *http.Request) string {
	if hosts := req.Header["Host"]; len(hosts) > 1 {
		return "too many Host headers"
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	return ""
}
