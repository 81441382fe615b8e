// Package h1client sends the gateway's HTTP/1.1 upstream requests that
// have no body or a small one of declared length on the caller's
// goroutine.
//
// net/http's Transport hands every request to a connection's writeLoop
// goroutine; its readLoop goroutine reads the response, passes it back
// over a channel and waits on another for the body's end before the
// connection goes back to the pool. For the gateway's common requests (a
// GET with no body, a small JSON POST, relayed on a keep-alive
// connection) that handoff is a large share of its CPU time. A Client
// does the same work on the goroutine that called RoundTrip: it reads a
// body (Content-Length 1 to 16 KiB) whole into a pooled buffer, as
// nginx's request buffering does, then takes a connection from its pool
// (or dials one), writes the request through a pooled buffer (the bytes
// http.Request.Write writes, without its allocations: write.go), reads
// the response with http.ReadResponse, and puts the
// connection back when the body reached its end. Anything else — a body
// of unknown length (chunked) or larger than 16 KiB, an upgrade, Expect,
// trailers, a header net/http would refuse — goes to Fallback unchanged.
//
// What it keeps of Transport's behaviour:
//
//   - the request bytes: Transport writes with http.Request.Write and
//     adds nothing for a keep-alive connection without compression; the
//     Client writes the same bytes (writeHead, held to Request.Write's
//     by FuzzWriteRequest, or Request.Write itself for a request with a
//     ClientTrace that asks for the fields written); a body shorter or
//     longer than its Content-Length is Transport's error, and then
//     nothing is sent;
//   - 1xx responses before the final one go to the request's
//     Informational (InformationalKey), or else its
//     httptrace.ClientTrace.Got1xxResponse; a 101 is an error (no
//     upgrade request comes here);
//   - each attempt to send the request is told to the request's
//     Attempts (AttemptsKey) and its httptrace.ClientTrace.GotConn, as
//     Transport calls GotConn, so a caller that bounds a transport's
//     attempts counts the Client's too;
//   - response headers are bounded (MaxResponseHeaderBytes, 1xx
//     included unless Got1xxResponse saw them) and timed
//     (ResponseHeaderTimeout, from the end of the write);
//   - a connection goes back to the pool only when its response body
//     reached its end and neither side asked to close; a body closed
//     before its end closes the connection (nothing is drained);
//   - a request whose reused connection fails before any byte of the
//     response arrived (the server had closed it while idle) is sent
//     once more on a new connection if Transport would replay it (GET,
//     HEAD, OPTIONS, TRACE, or an Idempotency-Key): with its body,
//     which the Client holds; a POST without a key is never sent twice;
//   - the request's context aborts a blocked write or read (a deadline in
//     the past, set by context.AfterFunc: no goroutine per request; for a
//     context with a Cancellation, AfterFunc on its parent and the
//     Cancellation's own hook, which cost no allocation of the context's);
//   - idle connections are bounded per host (MaxIdleConnsPerHost) and
//     closed after IdleConnTimeout by one timer per Client.
//
// Unlike Transport, an idle connection has no goroutine reading it: a
// server's close, or anything it sent while the connection was idle
// (a 408 before closing it), is found when the connection is next taken
// from the pool, by a look at its socket that reads nothing (package
// socket); the connection is then closed and another one used. A close
// that crosses the request is covered by the retry.
//
// Also unlike Transport, which streams a body while it writes and reads
// an early answer meanwhile, a body is read whole before a connection is
// taken (see maxBody for why the write then cannot wait on the server):
// a client that stalls its body holds no upstream connection, and when
// no connection can be had the error is a NotSentError, from which the
// request can be sent another way.
package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/msghead"
	"github.com/credgate/credgate/internal/socket"
)

// Client is an http.RoundTripper for HTTP/1.1 upstreams. Its pool is its
// own: connections are shared only among the requests of one Client.
// Set the fields before the first RoundTrip; a Client is safe for
// concurrent use.
type Client struct {
	// DialTLS returns a connection to addr (host:port) for an https
	// request, its TLS handshake done. It must not have negotiated a
	// protocol other than http/1.1 (or none). Its errors are returned
	// from RoundTrip as they are.
	DialTLS func(ctx context.Context, network, addr string) (net.Conn, error)
	// Dial returns a connection to addr for an http request.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Fallback sends the requests the Client does not (see the package
	// documentation).
	Fallback http.RoundTripper
	// ResponseHeaderTimeout bounds the wait for the response headers
	// after the request was written; 0 is no limit.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes a connection idle for that long; 0 keeps it.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost bounds the idle connections per scheme and
	// host:port; 0 is http.DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// MaxIdleConns bounds the idle connections to all hosts together,
	// as Transport's: a connection coming back to a full pool closes the
	// one idle the longest; 0 is no limit.
	MaxIdleConns int
	// MaxResponseHeaderBytes bounds the response headers; 0 is 1 MiB.
	MaxResponseHeaderBytes int64

	mu   sync.Mutex
	idle map[connKey][]*conn // per key, oldest first
	// nidle counts the connections in idle.
	nidle int
	// closing is set by CloseIdleConnections: a connection coming back
	// is closed, until a request asks for one (as Transport does).
	closing bool
	sweep   *time.Timer
	swept   bool // sweep is armed
}

// connKey is what a pooled connection is shared by: Transport's scheme
// and host:port. host and port are substrings of a request's URL.
type connKey struct {
	https      bool
	host, port string
}

func (k connKey) addr() string { return net.JoinHostPort(k.host, k.port) }

// maxBody is the largest request body the Client sends itself: a
// declared Content-Length of 1 to maxBody bytes. The body is read whole
// before a connection is taken, so a slow client holds no upstream
// connection, and written with the head in one write on the caller's
// goroutine, which then reads the response. Nothing reads the response
// while that write is in progress (Transport's readLoop does), so the
// write must never wait for the server to read: a server may answer
// early (a 413, a 401) without reading the body, and wait for its answer
// to be read before it reads on. 16 KiB and the head fit in the space
// the kernels give a connection without the peer's application reading
// (the receiving socket's buffer, 128 KiB by default on Linux, and the
// sending one's), so the write completes, or fails when the server
// closed; larger bodies go to Fallback, whose readLoop reads an early
// answer while its writeLoop still writes.
const maxBody = 16 << 10

// RoundTrip sends r (see the package documentation for which requests
// go to Fallback). A body is read to its end and closed before anything
// is sent; an error reading it is returned wrapped (errors.Is finds the
// body's own error), and nothing is sent.
func (c *Client) RoundTrip(r *http.Request) (*http.Response, error) {
	k, ok := eligible(r)
	if !ok {
		return c.Fallback.RoundTrip(WithTrace(r))
	}
	ctx := r.Context()
	var rb *reqBuf
	if r.ContentLength > 0 {
		var err error
		if rb, err = readBody(r); err != nil {
			return nil, err
		}
		// Written in full before roundTrip returns: nothing keeps the
		// buffer after RoundTrip.
		defer rb.free()
	}
	trace := httptrace.ContextClientTrace(ctx)
	pc, err := c.get(ctx, k, false)
	if err != nil {
		return nil, rb.notSent(r, err)
	}
	gotConn(ctx, trace, pc)
	resp, err := pc.roundTrip(ctx, r, rb, trace)
	if err != nil && pc.reused && pc.nread == 0 && ctx.Err() == nil && !isTimeout(err) && replayable(r) {
		// The server closed the connection while it was idle (or as
		// the request reached it): nothing of a response came, and the
		// request may be sent again. Once, on a new connection; never
		// a request Transport would not replay (a POST without an
		// idempotency key), which the server may have acted on.
		if pc, err = c.get(ctx, k, true); err != nil {
			return nil, rb.notSent(r, err)
		}
		gotConn(ctx, trace, pc)
		resp, err = pc.roundTrip(ctx, r, rb, trace)
	}
	return resp, err
}

// Attempts is told of each attempt to send a request, as
// httptrace.ClientTrace.GotConn is by net/http's transports: once the
// connection for it is had, before the request is written on it; once
// for a request sent once, again when the Client sends it a second time
// on a new connection (RoundTrip). A request whose context holds one
// under AttemptsKey has it called, then its ClientTrace's GotConn if it
// has one too, in the order httptrace.WithClientTrace would call the
// two: the caller counts the attempts of the common request without a
// ClientTrace in the context (an allocation per request) or a func value
// (another). A request that goes to Fallback, or to any other net/http
// transport, gets it as a ClientTrace (WithTrace).
type Attempts interface {
	GotConn(info httptrace.GotConnInfo)
}

// AttemptsKey is the context key of a request's Attempts.
type AttemptsKey struct{}

// gotConn tells ctx's Attempts and its ClientTrace trace (nil for none)
// that the request is about to be sent on pc.
func gotConn(ctx context.Context, trace *httptrace.ClientTrace, pc *conn) {
	a, ok := ctx.Value(AttemptsKey{}).(Attempts)
	if !ok && (trace == nil || trace.GotConn == nil) {
		return
	}
	info := httptrace.GotConnInfo{Conn: pc.nc, Reused: pc.reused, WasIdle: pc.reused}
	if pc.reused {
		info.IdleTime = time.Since(pc.idleAt)
	}
	if ok {
		a.GotConn(info)
	}
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(info)
	}
}

// Informational receives an upstream's 1xx responses before its final
// one, as httptrace.ClientTrace.Got1xxResponse does (an error fails the
// request). A request whose context holds one under InformationalKey
// gets them through it, then through its ClientTrace's Got1xxResponse
// if it has one too, in the order httptrace.WithClientTrace would call
// the two: the caller needs neither a ClientTrace in the context (an
// allocation per request) nor a func value (another) for the common
// request the Client sends itself. A request that goes to Fallback, or
// to any other net/http transport, gets it as a ClientTrace
// (WithInformationalTrace).
type Informational interface {
	Got1xxResponse(code int, header textproto.MIMEHeader) error
}

// InformationalKey is the context key of a request's Informational.
type InformationalKey struct{}

// Cancellation is the own cancellation of a context made for one
// request, told to the Client so that the round trip's abort needs no
// context.AfterFunc on that context: the first registration on a new
// context costs it a map and a channel, with AfterFunc's own two five
// allocations per request. A request whose context ctx holds one under
// CancellationKey, with Context() == ctx, is cancelled exactly when
// Parent() is or its own cancellation fires: the Client arranges for its
// abort with context.AfterFunc on Parent (a context that outlives the
// request, whose map and channel are made once) and with OnCancel for
// the rest. Any other request's context gets context.AfterFunc.
type Cancellation interface {
	// Context is the context whose own cancellation this is.
	Context() context.Context
	// Parent is the context Context derives from, cancelled with it:
	// Context's Done is closed once Parent's is (the abort on Parent
	// waits for it); nil when OnCancel covers its cancellation too.
	Parent() context.Context
	// OnCancel has abort called when the context's own cancellation
	// fires (and Parent's, when Parent is nil), at once when it has
	// fired; one abort at a time. abort is called only once Context
	// reports the cancellation (Err is not nil): a read or write it
	// fails must be found to be the context's doing.
	OnCancel(abort func())
	// StopOnCancel undoes OnCancel; it reports whether abort had not
	// been called (as the stop func of context.AfterFunc).
	StopOnCancel() bool
}

// CancellationKey is the context key of a request's Cancellation.
type CancellationKey struct{}

// informational is the receiver of ctx's 1xx responses: its
// Informational and its ClientTrace's Got1xxResponse, either alone, or
// nil for neither.
func informational(ctx context.Context, trace *httptrace.ClientTrace) func(int, textproto.MIMEHeader) error {
	var got func(int, textproto.MIMEHeader) error
	if trace != nil {
		got = trace.Got1xxResponse
	}
	inf, ok := ctx.Value(InformationalKey{}).(Informational)
	switch {
	case !ok:
		return got
	case got == nil:
		return inf.Got1xxResponse
	}
	return func(code int, h textproto.MIMEHeader) error {
		if err := inf.Got1xxResponse(code, h); err != nil {
			return err
		}
		return got(code, h)
	}
}

// WithTrace returns r for a transport that knows only httptrace: when
// r's context holds an Informational or an Attempts, a copy of r whose
// context has a ClientTrace calling them (Got1xxResponse, GotConn),
// composed with any trace already there; else r itself. Not for a
// request sent through a Client, which would then call each twice.
func WithTrace(r *http.Request) *http.Request {
	ctx := r.Context()
	inf, infOK := ctx.Value(InformationalKey{}).(Informational)
	a, aOK := ctx.Value(AttemptsKey{}).(Attempts)
	if !infOK && !aOK {
		return r
	}
	trace := &httptrace.ClientTrace{}
	if infOK {
		trace.Got1xxResponse = inf.Got1xxResponse
	}
	if aOK {
		trace.GotConn = a.GotConn
	}
	return r.WithContext(httptrace.WithClientTrace(ctx, trace))
}

// replayable is net/http's Request.isReplayable for a request whose body
// the client holds: Transport sends such a request again on a new
// connection when its reused one failed before any byte of a response.
func replayable(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	if !ok {
		_, ok = r.Header["X-Idempotency-Key"]
	}
	return ok
}

// eligible reports whether the client sends r itself, and its pool key:
// no body, or one of a declared length up to maxBody (not chunked).
func eligible(r *http.Request) (connKey, bool) {
	if r.URL == nil || r.Header == nil || r.Close || len(r.TransferEncoding) != 0 || len(r.Trailer) != 0 {
		return connKey{}, false
	}
	if r.RequestURI != "" {
		// A server's request passed on as it is: Transport refuses it
		// ("Request.RequestURI can't be set in client requests").
		return connKey{}, false
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	switch {
	case r.ContentLength == 0 && !hasBody:
	case r.ContentLength > 0 && r.ContentLength <= maxBody && hasBody:
	default:
		// A body of unknown length (ContentLength 0 with a body, or
		// -1), a large one, or a length without a body.
		return connKey{}, false
	}
	//lint:ignore SA1019 a request that still uses Cancel gets Transport's handling of it
	if r.Cancel != nil {
		return connKey{}, false
	}
	if r.Method != "" && !validMethod(r.Method) || r.Method == http.MethodConnect {
		// CONNECT: Transport's tunnel, never an API call.
		return connKey{}, false
	}
	if r.Header["Upgrade"] != nil || r.Header["Expect"] != nil || r.Header["Connection"] != nil {
		return connKey{}, false
	}
	var k connKey
	switch r.URL.Scheme {
	case "https":
		k.https, k.port = true, "443"
	case "http":
		k.port = "80"
	default:
		return connKey{}, false
	}
	if r.URL.Host == "" || !printableASCII(r.URL.Host) || !printableASCII(r.Host) || r.URL.Opaque != "" ||
		!printableASCII(r.URL.Path) || !printableASCII(r.URL.RawPath) || !printableASCII(r.URL.RawQuery) {
		// Transport's errors (or IDNA conversion) for these.
		return connKey{}, false
	}
	k.host = r.URL.Hostname()
	if p := r.URL.Port(); p != "" {
		k.port = p
	}
	for name, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return connKey{}, false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return connKey{}, false
			}
		}
	}
	return k, true
}

// reqBuf holds a request body read whole, and the shallow copy of the
// request that Request.Write is given when writeHead does not write it:
// the caller's request is not modified.
type reqBuf struct {
	req http.Request
	rd  bytes.Reader
	// body is io.NopCloser(&rd), made once: Request.Write knows it for
	// a reader in memory and writes the head and the body in one flush
	// (for a body that may block it flushes the head first).
	body io.ReadCloser
	n    int
	b    [maxBody + 1]byte
}

var reqBufs = sync.Pool{New: func() any {
	rb := new(reqBuf)
	rb.body = io.NopCloser(&rb.rd)
	return rb
}}

// readBody reads r's body, of r.ContentLength bytes (1 to maxBody), to
// its end and closes it. A body that ends before its length or goes on
// past it is an error, as Transport's ("http: ContentLength=%d with Body
// length %d"); so is a read error, wrapped.
func readBody(r *http.Request) (*reqBuf, error) {
	rb := reqBufs.Get().(*reqBuf)
	want := int(r.ContentLength) + 1 // one more: the end must be seen
	n := 0
	var err error
	for n < want && err == nil {
		var m int
		m, err = r.Body.Read(rb.b[n:want])
		n += m
	}
	_ = r.Body.Close()
	switch {
	case n == want:
		err = fmt.Errorf("h1client: http: ContentLength=%d with Body length %d or more", r.ContentLength, n)
	case err != io.EOF:
		err = fmt.Errorf("h1client: read the request body: %w", err)
	case n != want-1:
		err = fmt.Errorf("h1client: http: ContentLength=%d with Body length %d", r.ContentLength, n)
	default:
		err = nil
	}
	if err != nil {
		rb.free()
		return nil, err
	}
	rb.n = n
	rb.req = *r
	rb.req.Body, rb.req.GetBody = rb.body, nil
	rb.rd.Reset(rb.b[:n])
	return rb, nil
}

// rewind makes the body readable again from its start (rb may be nil).
func (rb *reqBuf) rewind() {
	if rb != nil {
		rb.rd.Reset(rb.b[:rb.n])
	}
}

func (rb *reqBuf) free() {
	rb.req = http.Request{}
	rb.rd.Reset(nil)
	rb.n = 0
	reqBufs.Put(rb)
}

// notSent is RoundTrip's error when no connection could be had: err
// itself for a request without a body (rb nil), a NotSentError holding
// a copy of what was read of the body otherwise.
func (rb *reqBuf) notSent(r *http.Request, err error) error {
	if rb == nil {
		return err
	}
	return &NotSentError{Err: err, Request: withBody(r, bytes.Clone(rb.b[:rb.n]))}
}

// withBody is a shallow copy of r whose body replays b.
func withBody(r *http.Request, b []byte) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.Body = io.NopCloser(bytes.NewReader(b))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return r2
}

// NotSentError is RoundTrip's error for a request with a body when no
// connection could be had (a dial or TLS error, returned by Dial or
// DialTLS as Err): the request's body was read and closed, and nothing
// was sent — or, when the dial was the retry's, the request went out
// once on a reused connection that failed before any byte of an answer,
// which is retried only for a request Transport would replay. Request is
// the request as given to RoundTrip with a body that replays the bytes
// read, for a caller that sends it another way.
type NotSentError struct {
	Err     error
	Request *http.Request
}

// Error is Err's text: the connection's error, as it would have been
// without the body.
func (e *NotSentError) Error() string { return e.Err.Error() }

// Unwrap returns Err, so errors.Is and errors.As see the dial's error.
func (e *NotSentError) Unwrap() error { return e.Err }

// printableASCII reports whether s holds no control byte and nothing
// beyond ASCII.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validMethod is net/http's: a token.
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return m != ""
}

// conn is one upstream connection. Read counts and bounds what the
// response reads from it.
type conn struct {
	c     *Client
	key   connKey
	nc    net.Conn
	br    *bufio.Reader // nil while idle
	tls   *tls.ConnectionState
	abort func() // sets a deadline in the past (context.AfterFunc)
	// abortOwn is abort for the AfterFunc on a Cancellation's Parent: it
	// waits until ownCtx (the Cancellation's Context) is cancelled too
	// (see watch).
	abortOwn func()
	ownCtx   context.Context
	// stopCtx and own undo watch (unwatch): the AfterFunc's stop, and
	// the request context's Cancellation when it has one.
	stopCtx func() bool
	own     Cancellation
	// raw is the socket under nc (nil when it has none); peek looks at
	// it, setting pending.
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	pending bool

	limit  int64 // bytes Read may still return
	nread  int64 // bytes read since the request was written
	sawEOF bool
	reused bool
	idleAt time.Time
}

func (pc *conn) Read(p []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, errHeaderLimit
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.nc.Read(p)
	if err == io.EOF {
		pc.sawEOF = true
	}
	pc.limit -= int64(n)
	pc.nread += int64(n)
	return n, err
}

var errHeaderLimit = errors.New("h1client: response header limit reached")

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return &reqWriter{bw: bufio.NewWriterSize(nil, 4<<10)} }}
)

// errSwitched answers a 101 to a request that asked for no upgrade.
var errSwitched = errors.New("h1client: the upstream switched protocols (101) without an upgrade request")

// headerTimeoutError is a response that did not begin in time.
type headerTimeoutError struct{ d time.Duration }

func (e headerTimeoutError) Error() string {
	return fmt.Sprintf("h1client: no response headers from the upstream within %s (upstream.response_header_timeout)", e.d)
}
func (headerTimeoutError) Timeout() bool   { return true }
func (headerTimeoutError) Temporary() bool { return true }
func (headerTimeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// roundTrip writes r, its body held by rb (nil for none), on pc and
// reads the response headers to r; trace is r's ClientTrace (nil for
// none). On an error pc is closed.
func (pc *conn) roundTrip(ctx context.Context, r *http.Request, rb *reqBuf, trace *httptrace.ClientTrace) (*http.Response, error) {
	pc.watch(ctx)
	fail := func(err error) (*http.Response, error) {
		pc.unwatch()
		pc.close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	pc.nread = 0
	rw := writers.Get().(*reqWriter)
	rw.bw.Reset(pc.nc)
	// eligible and readBody left the write only the connection's
	// errors to return.
	err := rw.write(r, rb, trace)
	if err == nil {
		err = rw.bw.Flush()
	}
	rw.bw.Reset(nil)
	writers.Put(rw)
	if err != nil {
		return fail(fmt.Errorf("h1client: write the request: %w", err))
	}
	d := pc.c.ResponseHeaderTimeout
	if d > 0 {
		_ = pc.nc.SetReadDeadline(time.Now().Add(d))
		if ctx.Err() != nil {
			pc.abort() // the AfterFunc's deadline may have been overwritten
		}
	}
	max := pc.c.maxHeader()
	pc.limit = max
	var resp *http.Response
	var fast *fastResponse
	var got1xx func(int, textproto.MIMEHeader) error // found at the first 1xx
	space, _ := ctx.Value(ResponseSpaceKey{}).(*ResponseSpace)
	for {
		if fast = readFastResponse(pc.br, r, max, space); fast != nil {
			resp = &fast.resp // a final response (response.go)
			break
		}
		resp, err = http.ReadResponse(pc.br, r)
		if err != nil {
			switch {
			case pc.limit <= 0:
				err = fmt.Errorf("%w: over %d bytes", ErrResponseHeadersTooLarge, max)
			case d > 0 && isTimeout(err) && ctx.Err() == nil:
				err = headerTimeoutError{d}
			}
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code == http.StatusSwitchingProtocols {
			if code < 100 {
				return fail(fmt.Errorf("h1client: the upstream answered with status %d", code))
			}
			return fail(errSwitched)
		}
		if code >= 200 {
			break
		}
		if got1xx == nil {
			got1xx = informational(ctx, trace)
		}
		if got1xx != nil {
			if err := got1xx(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
			// Delivered: the caller bounds them (as Transport).
			pc.limit = max
		}
	}
	pc.limit = math.MaxInt64
	resp.TLS = pc.tls
	if d > 0 {
		// Not for the body; nor for the idle connection, whose socket
		// stale looks at through the poller, which refuses once a
		// deadline has passed.
		_ = pc.nc.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			pc.abort()
		}
	}
	if resp.Body == http.NoBody {
		pc.release(!resp.Close)
		return resp, nil
	}
	if fast != nil {
		fast.body = body{rc: resp.Body, pc: pc, ctx: ctx, keep: !resp.Close}
		resp.Body = &fast.body
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, pc: pc, ctx: ctx, keep: !resp.Close}
	return resp, nil
}

// watch arranges for pc's blocked writes and reads to be aborted (a
// deadline in the past) once ctx is cancelled, until unwatch: through
// ctx's Cancellation when it has one, else context.AfterFunc.
//
// The abort never comes before ctx reports its cancellation: a write or
// read it fails is classified by ctx.Err() (here, and by the caller),
// and one failed while ctx still reported none would be the upstream's
// failure (a timeout, the deadline in the past) instead of the caller's
// cancellation. AfterFunc on ctx itself runs once ctx is cancelled; on a
// Cancellation's Parent it may run before the parent's cancel reached
// ctx (a parent cancels its children in no set order, after starting its
// AfterFuncs), so that abort (abortOwn) waits for ctx, which the
// Cancellation's contract says is cancelled with its parent. ownCtx is
// written here only: a connection whose abortOwn may have run is closed,
// never watched again (release, roundTrip's fail).
func (pc *conn) watch(ctx context.Context) {
	if own, ok := ctx.Value(CancellationKey{}).(Cancellation); ok && own.Context() == ctx {
		pc.own = own
		if p := own.Parent(); p != nil {
			pc.ownCtx = ctx
			pc.stopCtx = context.AfterFunc(p, pc.abortOwn)
		}
		own.OnCancel(pc.abort)
		return
	}
	pc.stopCtx = context.AfterFunc(ctx, pc.abort)
}

// unwatch undoes watch; it reports false when the abort was called (or
// may yet run): pc's deadline may then have passed.
func (pc *conn) unwatch() bool {
	stopped := true
	if pc.stopCtx != nil {
		stopped = pc.stopCtx()
	}
	if pc.own != nil {
		stopped = pc.own.StopOnCancel() && stopped
	}
	pc.stopCtx, pc.own = nil, nil
	return stopped
}

// release ends the round trip on pc, undoing its watch; the connection
// goes back to the pool when keep and nothing speaks against it, else it
// is closed.
func (pc *conn) release(keep bool) {
	if !pc.unwatch() {
		keep = false // the context ended: pc's deadline has passed
	}
	if !keep || pc.sawEOF || pc.br.Buffered() != 0 {
		// A byte beyond the response would be read as the next one's.
		pc.close()
		return
	}
	pc.c.put(pc)
}

// stale reports whether the idle connection pc was closed or sent
// something while it was idle: nothing may come from an upstream between
// requests (a server that closes idle connections may first send a 408,
// which must not be read as the next request's answer). What the TLS
// layer read ahead is not seen here; release made sure nothing was
// buffered above it.
func (pc *conn) stale() bool {
	if pc.raw == nil {
		return false
	}
	pc.pending = false
	if err := pc.raw.Read(pc.peek); err != nil {
		return false // cannot tell: the retry covers it
	}
	return pc.pending
}

func (pc *conn) close() {
	_ = pc.nc.Close()
}

func (c *Client) maxHeader() int64 {
	if c.MaxResponseHeaderBytes > 0 {
		return c.MaxResponseHeaderBytes
	}
	return 1 << 20
}

// ErrResponseHeadersTooLarge is the error of a response whose header
// block (a 1xx's or the final one's) is over MaxResponseHeaderBytes.
var ErrResponseHeadersTooLarge = errors.New("h1client: the upstream's response headers are too large")

// errReadAfterClose is what Read returns once Close was called, as
// Transport's response bodies do.
var errReadAfterClose = errors.New("http: read on closed response body")

// body is a response body on a pooled connection: its end returns the
// connection to the pool, Close before the end closes it.
type body struct {
	rc   io.ReadCloser
	pc   *conn
	ctx  context.Context
	keep bool

	mu  sync.Mutex
	err error // set once the connection is released or closed
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if err := b.err; err != nil {
		b.mu.Unlock()
		return 0, err
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.err != nil:
		// Closed meanwhile.
		return n, b.err
	case err == io.EOF:
		b.err = io.EOF
		b.pc.release(b.keep)
	default:
		b.pc.unwatch()
		b.pc.close()
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		b.err = err
	}
	return n, err
}

// Arrived reports whether the rest of the body is in the connection's
// read buffer already, so that reading it to its end waits for nothing
// from the upstream: for a response the fast path read (response.go);
// false for any other, and once the body was closed or failed.
func (b *body) Arrived() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err == io.EOF
	}
	lb, ok := b.rc.(*msghead.LengthBody)
	return ok && lb.Arrived()
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		// Before the end: the rest is not read, the connection goes.
		b.pc.unwatch()
		b.pc.close()
	}
	b.err = errReadAfterClose
	return nil
}

// get returns an idle connection for k (unless fresh) or dials one.
func (c *Client) get(ctx context.Context, k connKey, fresh bool) (*conn, error) {
	for !fresh {
		pc := c.takeIdle(k)
		if pc == nil {
			break
		}
		if pc.stale() {
			pc.close()
			continue
		}
		pc.br = readers.Get().(*bufio.Reader)
		pc.br.Reset(pc)
		return pc, nil
	}
	var nc net.Conn
	var err error
	if k.https {
		nc, err = c.DialTLS(ctx, "tcp", k.addr())
	} else {
		nc, err = c.Dial(ctx, "tcp", k.addr())
	}
	if err != nil {
		return nil, err
	}
	// The key outlives the request: not substrings of its URL.
	k.host, k.port = strings.Clone(k.host), strings.Clone(k.port)
	pc := &conn{c: c, key: k, nc: nc, raw: socket.Raw(nc)}
	pc.abort = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	pc.abortOwn = func() {
		<-pc.ownCtx.Done()
		pc.abort()
	}
	pc.peek = func(fd uintptr) bool {
		pc.pending = socket.Readable(fd)
		return true // look, never wait
	}
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		if p := cs.NegotiatedProtocol; p != "" && p != "http/1.1" {
			_ = nc.Close()
			return nil, fmt.Errorf("h1client: %s negotiated %q, not http/1.1", k.addr(), p)
		}
		pc.tls = &cs
	}
	pc.br = readers.Get().(*bufio.Reader)
	pc.br.Reset(pc)
	return pc, nil
}

// takeIdle pops k's most recently used idle connection, closing those
// that were idle too long.
func (c *Client) takeIdle(k connKey) *conn {
	c.mu.Lock()
	c.closing = false
	stack := c.idle[k]
	if len(stack) == 0 {
		c.mu.Unlock()
		return nil
	}
	pc := stack[len(stack)-1]
	if c.expired(pc, time.Now()) {
		// It is the newest: all of them are too old.
		old := append([]*conn(nil), stack...)
		clear(stack)
		c.idle[k] = stack[:0]
		c.nidle -= len(old)
		c.mu.Unlock()
		for _, pc := range old {
			pc.close()
		}
		return nil
	}
	stack[len(stack)-1] = nil
	c.idle[k] = stack[:len(stack)-1]
	c.nidle--
	c.mu.Unlock()
	return pc
}

// put returns pc, whose response ended cleanly, to the pool.
func (c *Client) put(pc *conn) {
	pc.br.Reset(nil)
	readers.Put(pc.br)
	pc.br = nil
	max := c.MaxIdleConnsPerHost
	if max <= 0 {
		max = http.DefaultMaxIdleConnsPerHost
	}
	now := time.Now()
	c.mu.Lock()
	if c.closing || len(c.idle[pc.key]) >= max {
		c.mu.Unlock()
		pc.close()
		return
	}
	pc.reused, pc.idleAt = true, now
	if c.idle == nil {
		c.idle = make(map[connKey][]*conn)
	}
	var evicted *conn
	if c.MaxIdleConns > 0 && c.nidle >= c.MaxIdleConns {
		evicted = c.evictOldestLocked()
	}
	c.idle[pc.key] = append(c.idle[pc.key], pc)
	c.nidle++
	if c.IdleConnTimeout > 0 && !c.swept {
		c.swept = true
		if c.sweep == nil {
			c.sweep = time.AfterFunc(c.IdleConnTimeout, c.sweepIdle)
		} else {
			c.sweep.Reset(c.IdleConnTimeout)
		}
	}
	c.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
}

// evictOldestLocked takes out of the pool the connection idle the
// longest, of any host, for the caller to close (MaxIdleConns). One pass
// over the hosts, only when the pool is full. c.mu is held.
func (c *Client) evictOldestLocked() *conn {
	var oldest connKey
	var at time.Time
	for k, stack := range c.idle {
		if len(stack) > 0 && (at.IsZero() || stack[0].idleAt.Before(at)) {
			oldest, at = k, stack[0].idleAt
		}
	}
	stack := c.idle[oldest]
	if len(stack) == 0 {
		return nil
	}
	pc := stack[0]
	rest := copy(stack, stack[1:])
	clear(stack[rest:])
	if rest == 0 {
		delete(c.idle, oldest)
	} else {
		c.idle[oldest] = stack[:rest]
	}
	c.nidle--
	return pc
}

func (c *Client) expired(pc *conn, now time.Time) bool {
	return c.IdleConnTimeout > 0 && now.Sub(pc.idleAt) >= c.IdleConnTimeout
}

// sweepIdle closes the connections idle for IdleConnTimeout and arms the
// timer for the next one to expire.
func (c *Client) sweepIdle() {
	now := time.Now()
	var old []*conn
	c.mu.Lock()
	var next time.Time
	for k, stack := range c.idle {
		n := 0
		for n < len(stack) && c.expired(stack[n], now) {
			n++
		}
		old = append(old, stack[:n]...)
		c.nidle -= n
		if n == len(stack) {
			delete(c.idle, k)
			continue
		}
		if n > 0 {
			rest := copy(stack, stack[n:])
			clear(stack[rest:])
			c.idle[k] = stack[:rest]
		}
		if first := stack[0].idleAt; next.IsZero() || first.Before(next) {
			next = first
		}
	}
	c.swept = !next.IsZero()
	if c.swept {
		c.sweep.Reset(next.Add(c.IdleConnTimeout).Sub(now))
	}
	c.mu.Unlock()
	for _, pc := range old {
		pc.close()
	}
}

// CloseIdleConnections closes the idle connections; those in use are
// closed when they come back, until the next request asks for one.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	var old []*conn
	for _, stack := range c.idle {
		old = append(old, stack...)
	}
	c.idle = nil
	c.nidle = 0
	c.closing = true
	if c.swept {
		c.sweep.Stop()
		c.swept = false
	}
	c.mu.Unlock()
	for _, pc := range old {
		pc.close()
	}
}

// Idle returns the number of idle connections.
func (c *Client) Idle() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, stack := range c.idle {
		n += len(stack)
	}
	return n
}
