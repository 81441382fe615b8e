package h1

import (
	"bufio"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of one request on a conn.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header
	body   *body // nil without a request body

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

// Header implements http.ResponseWriter. The map is made on first use,
// unless AdoptHeader gave one.
func (w *response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response's header, in place of one that is
// still empty, and reports whether it did (not once a field was set or
// the header written). A handler relaying a header map it owns (a
// proxy's, its upstream response's) saves the map and the copy; h is
// the response's from then on, and what the server adds to it as it
// writes the header (Date, Connection, the framing fields) shows in it.
func (w *response) AdoptHeader(h http.Header) bool {
	if len(w.header) > 0 || w.wroteHeader || w.hijacked || h == nil {
		return false
	}
	w.header = h
	return true
}

// WriteHeader implements http.ResponseWriter.
func (w *response) WriteHeader(code int) {
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
		if code == http.StatusContinue {
			if w.continued {
				return
			}
			w.continued = true
		}
		w.writeStatusLine(code)
		WriteHeaderFields(w.c.bw, w.header)
		_, _ = w.c.bw.WriteString("\r\n")
		w.setErr(w.c.bw.Flush())
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.Header()
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
	if w.wantsClose || w.c.s.draining() || w.bodyLeft() {
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
	WriteHeaderFields(w.c.bw, h)
	_, err := w.c.bw.WriteString("\r\n")
	w.setErr(err)
}

// WriteHeaderFields writes the header section, unsorted (field order is
// not significant between different names). A CR or LF in a value becomes
// a space and a field whose name is not a valid token is dropped, so
// nothing an upstream sends can split the response; http.TrailerPrefix
// keys are left for the trailer section. The gateway writes the 101 of
// a WebSocket upgrade it relays with it.
func WriteHeaderFields(bw *bufio.Writer, h http.Header) {
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

func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	// code is 100..999 (WriteHeader makes it so): three digits, written
	// one by one (a slice of a local array passed to Write escapes).
	_ = bw.WriteByte(byte('0' + code/100))
	_ = bw.WriteByte(byte('0' + code/10%10))
	_ = bw.WriteByte(byte('0' + code%10))
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(http.StatusText(code))
	_, _ = bw.WriteString("\r\n")
}

// bodyLeft reports, as the final response begins, that the request body
// will not be read to its end: the client was never asked for it (100
// Continue not sent: it waits, and the upstream answered without it), a
// read of it failed (a broken chunked encoding: where the next request
// would start is unknown), or more is left than the server drains. The
// response then says Connection: close. A body of unknown length is drained after the
// response if it can be (net/http reads up to maxUnreadBody of it before
// writing the header; here the response goes first).
func (w *response) bodyLeft() bool {
	b := w.body
	if b == nil || b.eof.Load() {
		return false
	}
	if b.cont != nil && !w.continued || b.broken.Load() {
		return true
	}
	return w.req.ContentLength >= 0 && w.req.ContentLength-b.n.Load() > maxUnreadBody
}

// continueSent reports whether 100 Continue was written.
func (w *response) continueSent() bool {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	return w.continued
}

// writeContinue answers Expect: 100-continue when the handler first reads
// the body, unless the final response has already begun.
func (w *response) writeContinue() {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if w.wroteHeader || w.continued || w.hijacked {
		return
	}
	w.continued = true
	_, _ = w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	w.setErr(w.c.bw.Flush())
}

func (w *response) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
	}
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) {
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
func (w *response) FlushError() error {
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
func (w *response) Flush() { _ = w.FlushError() }

// SetReadDeadline sets the client connection's read deadline, for
// http.ResponseController: limits.body_idle_timeout aborts a stalled body
// read with it.
func (w *response) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		// An abort: the rest of the body is not drained.
		if b, ok := w.req.Body.(*body); ok {
			b.broken.Store(true)
		}
	}
	return w.c.tc.SetReadDeadline(t)
}

// Hijack implements http.Hijacker, for protocol upgrades (WebSocket).
// The buffered reader holds what the client sent after the request.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("h1: hijack after the response header was written")
	}
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	// Nothing else may read the connection once the hijacker has it.
	w.c.stopWatching()
	w.c.wmu.Lock()
	w.hijacked = true
	w.c.wmu.Unlock()
	// The request body is done with: reads of it must not race the
	// hijacker's reads of the connection.
	if b, ok := w.req.Body.(*body); ok {
		b.mu.Lock()
		b.detached = true
		b.mu.Unlock()
	}
	c := w.c
	c.upgraded.Store(true)
	c.lr.N = math.MaxInt64
	if c.src.has && c.br.Buffered() == 0 {
		// The watch for the client leaving read the first byte the
		// client sent after the request (a CONNECT's optimistic TLS
		// ClientHello): into the buffer with it, where the hijacker
		// finds it (net/http does the same). source returns it without
		// reading the connection.
		_, _ = c.br.Peek(1)
	}
	// The header's read deadline may still be set (serveRequest leaves it
	// for a request without a body): the hijacker reads without one, and
	// writes without the server's write deadline (Limits.WriteIdleTimeout:
	// a tunnel or WebSocket is bounded by its hijacker).
	_ = c.tc.SetReadDeadline(time.Time{})
	c.out.fix(time.Time{})
	brw := bufio.NewReadWriter(c.br, c.bw)
	return c.tc, brw, nil
}

// finish completes the response after the handler returned and reports
// whether the connection can carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		if h := w.Header(); h.Get("Content-Length") == "" && w.req.Method != http.MethodHead {
			h.Set("Content-Length", "0")
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
func (w *response) writeTrailers() {
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
	WriteHeaderFields(w.c.bw, t)
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
