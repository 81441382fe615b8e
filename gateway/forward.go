package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/gateway/internal/h1"
	"github.com/credgate/credgate/gateway/internal/h1client"
	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/transform"
)

// hopHeaders are the hop-by-hop fields (headerset.Hop): never forwarded
// in either direction.
var hopHeaders = headerset.NewRemover(headerset.Hop)

// removeHopHeaders deletes the hop-by-hop fields and those the Connection
// field names.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	hopHeaders.Remove(h) // canonical already
}

// removeUpstreamFields deletes from the fields of an upstream's response
// — the final one's header and trailers, a 1xx's, a 101's — what never
// reaches the client: the hop-by-hop fields and those the Connection
// field names (removeHopHeaders), and ReasonHeader. On the client's side
// of the gateway X-Credgate-Reason is the gateway's own word: its
// refusals and upstream failures carry it, each with an audit line, and
// clients branch on it (a kill switch's disabled, quarantined,
// credential_unavailable). An upstream's copy would pass the upstream's
// answer off as one of the gateway's, which no audit line records; a
// client's copy is never forwarded upstream either (gatewayHeaders).
func removeUpstreamFields(h http.Header) {
	removeHopHeaders(h)
	delete(h, ReasonHeader)
}

// forward sends the outbound request r (built by handle: destination,
// gateway headers removed, credential injected, reqState in its context)
// upstream and relays the response to w. It does what
// httputil.ReverseProxy does — hop-by-hop fields removed both ways, TE:
// trailers kept, trailers relayed, streaming responses flushed as they
// come, a response cut short by the upstream aborts the client's response
// instead of ending it cleanly — with less copying on every request. A
// WebSocket upgrade that checkUpgrade accepted (reqState.long set) is sent
// with Upgrade: websocket and, when the upstream switches protocols,
// relayed as a registered long-lived connection (relayUpgrade); any other
// 101 is refused. Other 1xx informational responses (103 Early Hints, 102)
// reach HTTP/1.1 and HTTP/2 clients as they arrive (relay1xx). Response
// headers are never held back for the body: a body that is not complete
// after its first read is flushed as it comes, headers first. Before its
// headers are copied, a response is scrubbed and its custodied values
// kept (transformResponse, scrub.go), and an upgraded connection's
// frames from the upstream are scrubbed as they are relayed (wsscrub.go).
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request) {
	st, _ := r.Context().Value(stateKey).(*reqState)
	upgrade := st != nil && st.long != nil
	// The hop-by-hop fields and the query were settled before the
	// injector signed the request (hopByHop): nothing of it changes here.
	if _, ok := r.Header["User-Agent"]; !ok {
		// Not Go's default: an empty value is not sent, so an injector
		// that signs the fields present did not see one either.
		r.Header["User-Agent"] = []string{""}
	}
	r.RequestURI = ""
	r.Close = false
	if r.ContentLength == 0 && r.Body != nil {
		_ = r.Body.Close()
		r.Body = nil
	}

	resp, err := g.upstream.RoundTrip(r)
	if st != nil {
		// After the response body's Close deferred below (defers run
		// last first): the HTTP/2 connections the request held may be
		// closed for upstream.max_idle_conns from then on.
		defer st.h2.end()
	}
	if err != nil {
		g.upstreamError(w, r, err)
		return
	}
	if st != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		// upstream.response_idle_timeout: released after the Close
		// deferred below (defers run last first). An upgrade request
		// answered with an ordinary response is relayed as one, and
		// watched as one.
		if g.watchResponse(&st.upBody, resp, &st.flight) {
			defer st.upBody.release()
		}
	}
	if st != nil && st.pool != nil {
		// After the Close below (defers run last first): a pool retired
		// while the response was relayed closes the connection it held
		// once it is idle.
		defer st.pool.released()
	}
	defer resp.Body.Close()
	if _, cut := cutInFlight(r, st); cut {
		// Cut in flight (the kill switch, the identity's loss, a
		// reload) while the answer was on its way: the transport may
		// not have seen the cancellation yet, the answer is not relayed.
		g.upstreamError(w, r, context.Cause(r.Context()))
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if !upgrade {
			// Only an upgrade request may be answered 101.
			g.upstreamError(w, r, errors.New("upstream switched protocols without an upgrade request"))
			return
		}
		// From here the long-lived connection's registration (openLong)
		// answers to the kill switch and the identity, not the request
		// in flight; a cut that came before the hand-over refuses the
		// switch.
		g.flights.remove(&st.flight)
		if _, cut := cutInFlight(r, st); cut {
			g.upstreamError(w, r, context.Cause(r.Context()))
			return
		}
		// Custody of the 101's cookies first: its Scrubber then scrubs
		// the frames too.
		if !g.keepInCustody(w, resp, st, true) {
			return
		}
		if st.resp != nil {
			st.resp.refreshEvery(g.scrubbers.current())
		}
		st.long.down = g.wsScrubber(st, resp)
		g.relayUpgrade(w, r, resp, st.long)
		return
	}
	removeUpstreamFields(resp.Header)
	removeUpstreamFields(resp.Trailer) // the fields announced; filled after the body
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		// No content, whatever a Content-Length says (RFC 9110 §6.4.1,
		// §8.6): nothing is read. Go's HTTP/2 client fails the read of a
		// 304 whose Content-Length states the representation's size
		// ("unexpected EOF" at the stream's end), which aborted a
		// response every client would have taken
		// (TestRelayAddsNoContentType).
		_ = resp.Body.Close()
		resp.Body, resp.ContentLength = http.NoBody, 0
	}
	_ = g.upstreamResponse(resp)
	if st != nil && !g.transformResponse(w, resp, st) {
		return
	}

	// The upstream's header becomes the client's when the server can
	// take it over (package h1's): no map made, nothing copied. Nothing
	// reads resp.Header below for a field the relay or the server's
	// WriteHeader changes (Content-Type is only added as nil).
	var dst http.Header
	if adoptHeader(w, resp.Header) {
		dst = resp.Header
	} else {
		dst = w.Header()
		for k, vv := range resp.Header {
			dst[k] = vv
		}
	}
	relayFraming(dst, resp, r.ProtoMajor)
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	// Server-sent events and bodies of unknown length are flushed as they
	// come (ReverseProxy's flush interval -1); the headers go at once.
	// Other bodies are flushed as they come too when their first read
	// does not complete them (copyBody).
	cl := announcedLength(st, resp)
	stream := cl == -1 || isEventStream(resp.Header.Get("Content-Type"))
	var rc *http.ResponseController
	if st != nil {
		st.rc = *http.NewResponseController(w) // no allocation of its own
		rc = &st.rc
	} else {
		rc = http.NewResponseController(w)
	}
	if stream {
		_ = rc.Flush()
	}
	err = g.copyBody(r.Context(), w, rc, resp.Body, stream, cl)
	gone := clientGone(r, st)
	left := gone != nil && st != nil && gone == st.flight.parent
	if _, cut := cutInFlight(r, st); err == nil && (cut || st != nil && st.upBody.stalled() || left && cl < 0) {
		// A request cut in flight (the kill switch, the loss of its
		// identity, a stalled upstream) never ends cleanly, whatever
		// the upstream client reported: net/http's Transport has
		// answered such a cut with the body's clean end. So has it the
		// cancellation of a client that went away during a body of
		// unknown length, whose end (the last chunk) the client never
		// got.
		if left && !cut {
			err = context.Cause(gone)
		} else {
			err = context.Cause(r.Context())
		}
	}
	if err != nil {
		// The body broke off: the client must not see a complete
		// response (a clean last chunk would make a truncated body look
		// whole). The server closes the connection.
		if st != nil {
			st.abortCode = codeUpstreamError
			f, cut := cutInFlight(r, st)
			if cut {
				// The kill switch, or the expiry or revocation of
				// the identity (inflight.go).
				st.abortCode = f.Code
				g.metrics.refusals.WithLabelValues(f.Code).Inc()
			}
			switch {
			case cut:
			case st.upBody.stalled():
				st.abortCode = codeUpstreamIdle
				g.metrics.refusals.WithLabelValues(codeUpstreamIdle).Inc()
			case st.body.cutOff():
				st.abortCode = codeBodyTimeout
			case errors.Is(err, errClientWrite) && clientStalled(err):
				st.abortCode = codeClientStalled
				g.metrics.refusals.WithLabelValues(codeClientStalled).Inc()
			case errors.Is(err, errClientWrite), st.in.failure() == bodyReadGone:
				st.abortCode = codeRequestBodyAborted
			case st.in.failure() == bodyReadMalformed:
				st.abortCode = codeBadRequest
			case errors.Is(err, transform.ErrGRPCCompressed), errors.Is(err, transform.ErrGRPCFraming):
				// A gRPC message the scrubber cannot read.
				st.abortCode = codeResponseNotScrubbable
				g.metrics.refusals.WithLabelValues(codeResponseNotScrubbable).Inc()
			case gone != nil:
				// The client went away while the gateway waited for
				// the upstream's next bytes (its connection closed, its
				// stream reset): the server cancelled the request, and
				// with it the upstream read that failed here. The
				// client's doing, as before the answer began
				// (upstreamError), not the upstream's; or the end of a
				// shutdown's drain (shutting_down).
				if f := ctxRefusal(gone, ""); f.Code != codeRequestBodyAborted {
					st.abortCode = f.Code
					g.metrics.refusals.WithLabelValues(f.Code).Inc()
				} else {
					st.abortCode = codeRequestBodyAborted
				}
			}
			if r.ProtoMajor == 2 && grpcNeedsHTTP2(r) && grpcResponse(resp.Header) {
				// A gRPC call over HTTP/2 cut by the upstream or the
				// gateway (the kill switch, its deadline, a reset...):
				// it ends with trailers naming why, which gRPC clients
				// report as a status, rather than a reset stream
				// (INTERNAL); handle returns instead of passing the
				// abort on (grpcEnding).
				if end, ok := g.grpcEnding(r, st, err, st.abortCode, f); ok {
					if end.Code != st.abortCode {
						st.abortCode = end.Code
						g.metrics.refusals.WithLabelValues(end.Code).Inc()
					}
					end.setGRPCTrailers(w.Header())
					st.grpcEnded = true
					st.grpcStatus = strconv.Itoa(int(end.grpcStatus()))
				}
			}
		}
		panic(http.ErrAbortHandler)
	}
	_ = resp.Body.Close() // fills resp.Trailer
	removeUpstreamFields(resp.Trailer)
	if st != nil {
		st.grpcStatus = grpcSent(r, resp)
	}
	if len(resp.Trailer) == 0 {
		if st != nil && cl >= 0 && !stream {
			st.whole = true // handle sends it before the audit line
		}
		return
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			dst[k] = vv
		}
		return
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
}

// headerAdopter is a ResponseWriter that can take a header map over in
// place of its own empty one (package h1's response).
type headerAdopter interface{ AdoptHeader(h http.Header) bool }

// adoptHeader makes h w's header when w, or the writer it wraps (every
// wrapper of the gateway's passes Header through), can take it over in
// place of an empty one, and reports whether it did.
func adoptHeader(w http.ResponseWriter, h http.Header) bool {
	for {
		switch t := w.(type) {
		case headerAdopter:
			return t.AdoptHeader(h)
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// hopByHop makes the request's header what the upstream receives, before
// the decision (a condition judges the fields the upstream gets) and
// before anything reads it for the upstream (custody, substitution, and
// the injector, which may sign it): the hop-by-hop fields removed (those
// the Connection field names were removed by stripConnectionNamed), TE
// kept only as "trailers" when the client accepts trailers, and the one
// upgrade relayed spelled canonically. Done in the forwarder, after the
// injector, it turned a signed request into another one: a signed
// Keep-Alive or TE removed or rewritten, and the upstream refused the
// signature.
func hopByHop(h http.Header, upgrade bool) {
	keepTE := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopHeaders(h)
	if keepTE {
		h["Te"] = []string{"trailers"}
	}
	if upgrade {
		// The one upgrade relayed, spelled canonically whatever the
		// client's case (checkUpgrade).
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{"websocket"}
	}
}

// relayFraming keeps the client's response what the upstream's was
// where the server writing it would otherwise change it: dst is the
// client's response header, already holding resp's fields, and
// clientMajor the client's HTTP major version.
//
//   - No Content-Type where the upstream sent none. Go's HTTP/2 server
//     sniffs the first bytes of a body without one and adds the type it
//     guesses (text/plain or text/html); a nil value is net/http's way of
//     saying none (http.ResponseWriter), and writes no field.
//   - No Content-Length on a 304 to an HTTP/2 client. Over HTTP/1.1 the
//     field of a 304 states the size of the representation (RFC 9110
//     §8.6) and every client knows a 304 has no content; Go's HTTP/2
//     client takes it as the length of a body still to come and fails
//     the response with "unexpected EOF" at the end of the stream, which
//     the same client talking HTTP/1.1 to the upstream never sees.
//
// e2e TestFidelityDifferential sends both through the gateway.
func relayFraming(dst http.Header, resp *http.Response, clientMajor int) {
	if _, ok := resp.Header["Content-Type"]; !ok {
		dst["Content-Type"] = nil
	}
	if clientMajor == 2 && resp.StatusCode == http.StatusNotModified {
		delete(dst, "Content-Length")
	}
}

// sentQuery returns the query as the upstream receives it: rawQuery byte
// for byte, except that each '&'-separated pair holding a ';' is removed
// (servers split such a pair differently: Go's and ReverseProxy's parsers
// drop it, others read two parameters, one of which an injector never
// saw). The pairs kept keep their bytes and their order: re-encoding the
// whole query, as this did before, sorted the pairs, re-escaped their
// bytes and dropped undecodable ones, so a query signed by the client (a
// presigned URL, an HMAC over the raw query) no longer matched its
// signature (e2e TestFidelityDifferential, TestSentQuery). The outbound
// request gets it before the injector signs it (outbound).
func sentQuery(rawQuery string) string {
	if !strings.Contains(rawQuery, ";") {
		return rawQuery
	}
	var b strings.Builder
	b.Grow(len(rawQuery))
	first := true
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if strings.Contains(pair, ";") {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(pair)
	}
	return b.String()
}

// informational has the upstream's 1xx responses relayed to w
// (relay1xx): the outbound request's context (stateCtx) then holds st as
// its h1client.Informational, which the h1client calls and which
// h1client.WithTrace turns into a ClientTrace for net/http's transports.
func (st *reqState) informational(w http.ResponseWriter) {
	st.w1xx = w
}

// Got1xxResponse implements h1client.Informational: relay1xx.
func (st *reqState) Got1xxResponse(code int, h textproto.MIMEHeader) error {
	return st.relay1xx(code, h)
}

// relay1xx passes an informational response the upstream sent before
// its final one (103 Early Hints, 102 Processing) on to the client, with
// its fields less the hop-by-hop ones: both the HTTP/1.1 loop and
// net/http's servers write a 1xx given to WriteHeader at once, with the
// fields then in the header map. It runs on the transport's goroutine
// while the handler waits for the final response, or on the handler's
// own for a request the h1client sends (pool.go). A 100 Continue is not
// relayed: the client's server sends its own when the body is first
// read, which the transport does once the upstream said 100 (the
// request's Expect: 100-continue is forwarded), so a client gets one.
// Its fields are scrubbed as the final response's are (invariant 13), and
// under custody it is not relayed.
//
// The upstream clients leave bounding 1xx responses to whoever takes them
// (net/http's Transport resets its header size limit for each one it
// delivers, and so does the h1client): an upstream may send at most
// max1xx of them, with max1xxBytes of fields in all, as Go's Transport
// bounds the ones it does not deliver; past that the upstream request
// fails (502 upstream_error). Before, an upstream sending 1xx without end
// was relayed until upstream.response_header_timeout.
func (st *reqState) relay1xx(code int, h textproto.MIMEHeader) error {
	st.n1xx++
	for k, vv := range h {
		for _, v := range vv {
			st.bytes1xx += len(k) + len(v) + 4 // ": " and CRLF, as on the wire
		}
	}
	if st.n1xx > max1xx || st.bytes1xx > max1xxBytes {
		return errTooMany1xx
	}
	if code == http.StatusContinue {
		return nil
	}
	dst := st.w1xx.Header()
	var kept http.Header
	if len(dst) > 0 {
		// Fields set for the final response (Connection: close while
		// draining) are not the 1xx's.
		kept = dst.Clone()
		clear(dst)
	}
	removeUpstreamFields(http.Header(h))
	if !st.resp.scrubInformational(http.Header(h)) {
		return nil // custody: only the final response is passed on
	}
	for k, vv := range h {
		dst[k] = vv
	}
	st.w1xx.WriteHeader(code)
	clear(dst)
	for k, vv := range kept {
		dst[k] = vv
	}
	return nil
}

// max1xx and max1xxBytes bound the informational responses an upstream
// may send before its final one (relay1xx): a few 103 Early Hints or 102
// Processing are what servers send; max1xxBytes bounds their fields in
// all (each is bounded by upstream.max_response_header_bytes too).
const (
	max1xx      = 64
	max1xxBytes = 1 << 20
)

// errTooMany1xx fails an upstream request whose upstream sent more 1xx
// responses than relay1xx passes on.
var errTooMany1xx = fmt.Errorf("the upstream sent more than %d informational (1xx) responses, or more than %d bytes of them, before its final response", max1xx, max1xxBytes)

// responseHeadersTooLarge says whether err is, or may be, an upstream
// client's refusal of a response header block over
// upstream.max_response_header_bytes: "" for no; "yes" for the h1client's
// ErrResponseHeadersTooLarge and net/http's HTTP/1.1 and HTTP/2 transports'
// own (which export no error value to test for: their texts are matched);
// the HTTP/2 error code for the HTTP/2 client's connection errors, which
// it gives for a field over the limit (COMPRESSION_ERROR, hpack's string
// limit) and a list over it (PROTOCOL_ERROR) as for other broken frames.
// TestUpstreamResponseHeaderLimit runs every upstream client.
func responseHeadersTooLarge(err error) string {
	if errors.Is(err, h1client.ErrResponseHeadersTooLarge) {
		return "yes"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "net/http: server response headers exceeded "),
		strings.Contains(msg, "http2: response header list larger than advertised limit"):
		return "yes"
	case msg == "connection error: COMPRESSION_ERROR", msg == "connection error: PROTOCOL_ERROR":
		return strings.TrimPrefix(msg, "connection error: ")
	}
	return ""
}

// h2BodyField caches where the HTTP/2 server's request body keeps whether
// its client sent Expect: 100-continue (set by the first h2ExpectsContinue).
var h2BodyField atomic.Pointer[struct {
	typ reflect.Type
	idx []int
}]

// h2ExpectsContinue reports whether the client of an HTTP/2 request whose
// body is body sent Expect: 100-continue and waits for a 100 before
// sending the body. Go's HTTP/2 server removes that field from the
// request and keeps it only in its body (an unexported needsContinue,
// read here through reflection: there is no API), so the gateway could
// not pass it on and the upstream could not decide. Reports false if a
// later Go release moves it (TestExpectContinueEndToEnd fails then).
func h2ExpectsContinue(body io.Reader) bool {
	v := reflect.ValueOf(body)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	e := v.Elem()
	if f := h2BodyField.Load(); f != nil && f.typ == e.Type() {
		return e.FieldByIndex(f.idx).Bool()
	}
	// The intercepting server's (golang.org/x/net/http2, configureHTTP2),
	// or net/http's bundled copy of it.
	if n := e.Type().Name(); n != "requestBody" && n != "http2requestBody" {
		return false
	}
	sf, ok := e.Type().FieldByName("needsContinue")
	if !ok || sf.Type.Kind() != reflect.Bool {
		return false
	}
	h2BodyField.Store(&struct {
		typ reflect.Type
		idx []int
	}{e.Type(), sf.Index})
	return e.FieldByIndex(sf.Index).Bool()
}

// errClientWrite marks a failed write to the client.
var errClientWrite = errors.New("gateway: writing the response to the client failed")

// copyBody copies the upstream body, of length cl (-1: unknown), to the
// client with a pooled buffer, until ctx (the upstream request's) is
// cancelled, flushing after every write when stream is set. A body its
// first read does not complete (a slow one, or one larger
// than the buffer) is streamed from then on: what has arrived, and the
// headers before it, go to the client at once instead of waiting in the
// server's write buffer for the rest (a flush costs nothing more for
// large writes, which bypass that buffer). A body complete in one read,
// the common small API answer, is sent with its headers in one write when
// the handler returns; while the first read waits, the headers are
// flushed alone after headerHold (readFirst). A scrubbed body (a
// chunkReader) is written from the scrubber's own buffer when what it
// has ready holds no match, not copied into the pooled one first. A read
// error other than the end of the body is returned; so is a failed
// write.
func (g *Gateway) copyBody(ctx context.Context, w io.Writer, rc *http.ResponseController, body io.Reader, stream bool, cl int64) error {
	buf := g.buffers.Get()
	defer g.buffers.Put(buf)
	cr, _ := body.(chunkReader)
	first := !stream
	for {
		var b []byte
		var rerr error
		if first && cl > 0 {
			b, rerr = readFirst(rc, body, cr, buf)
		} else {
			b, rerr = readChunk(body, cr, buf)
		}
		n := len(b)
		if n > 0 && ctx.Err() != nil {
			// Cancelled (a request cut in flight) while the read that
			// returned these bytes was under way: the transport may
			// not have seen it yet; nothing more is relayed.
			return context.Cause(ctx)
		}
		if n > 0 {
			if _, werr := w.Write(b); werr != nil {
				if clientStalled(werr) {
					// limits.write_idle_timeout: said in the audit line.
					return fmt.Errorf("%w: %w", errClientWrite, werr)
				}
				return errClientWrite
			}
		}
		if first {
			first = false
			if rerr == nil && (cl < 0 || int64(n) < cl) {
				stream = true
				if n == 0 {
					_ = rc.Flush() // the headers, at least
				}
			}
		}
		if stream && n > 0 {
			_ = rc.Flush()
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// chunkReader is a body that hands on bytes without copying them into
// the caller's buffer where it can: a body scrubbed by
// transform.Scrubber.TransformResponse, whose ReadChunk returns a stretch
// of its own buffer that holds no match (valid until its next call), or
// reads into p as Read does.
type chunkReader interface {
	ReadChunk(p []byte) ([]byte, error)
}

// readChunk reads the next bytes of body: through cr (body itself, as a
// chunkReader) when it is not nil, into buf otherwise.
func readChunk(body io.Reader, cr chunkReader, buf []byte) ([]byte, error) {
	if cr != nil {
		return cr.ReadChunk(buf)
	}
	n, err := body.Read(buf)
	return buf[:n], err
}

// headerHold is how long the first read of a body may keep its response
// headers back: when it waits longer, the headers go alone.
const headerHold = 2 * time.Millisecond

// headerTimer flushes the response headers when the first read of a body
// waits longer than headerHold (readFirst). Pooled: a response costs a
// timer reset and stop, no allocation.
type headerTimer struct {
	t  *time.Timer
	rc *http.ResponseController
	// wg is done when the timer was stopped before firing or fire
	// returned: the handler waits for it before it writes again, so the
	// flush never overlaps its writes.
	wg sync.WaitGroup
}

var headerTimers = sync.Pool{New: func() any {
	h := &headerTimer{}
	h.t = time.AfterFunc(time.Hour, h.fire)
	h.t.Stop()
	return h
}}

func (h *headerTimer) fire() {
	defer h.wg.Done()
	_ = h.rc.Flush()
}

// readFirst is the first read of a body of known length: the headers,
// written but still buffered, wait for it (to leave in one write with a
// body that came with them) only headerHold; a slow upstream's headers
// reach the client as soon as they arrived. A body that has arrived
// whole already (transform.ArrivedWhole: the common small answer, which
// came with its headers) is read without the timer, since the read
// cannot wait: setting even a timer that is stopped at once wakes an
// idle thread of the runtime to watch it (wakeNetPoller), on the
// request's critical path (docs/performance.md, "Critical path at a
// fixed rate").
func readFirst(rc *http.ResponseController, body io.Reader, cr chunkReader, buf []byte) ([]byte, error) {
	if transform.ArrivedWhole(body) {
		return readChunk(body, cr, buf)
	}
	h := headerTimers.Get().(*headerTimer)
	h.rc = rc
	h.wg.Add(1)
	h.t.Reset(headerHold)
	b, err := readChunk(body, cr, buf)
	if h.t.Stop() {
		h.wg.Done()
	}
	h.wg.Wait()
	h.rc = nil
	headerTimers.Put(h)
	return b, err
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// codeUpgradeNotAllowed refuses a protocol upgrade other than WebSocket.
const codeUpgradeNotAllowed = "upgrade_not_allowed"

// checkUpgrade judges a request's protocol upgrade before anything else
// is done with it. The one upgrade relayed is WebSocket (RFC 6455): an
// Upgrade field whose every token is "websocket" (any case), on a GET
// over HTTP/1.1 with Connection: upgrade and one valid Sec-WebSocket-Key
// (relayUpgrade checks the upstream's answer to it); it reports true for
// that. Any
// other Upgrade field — h2c, a list naming another protocol beside
// websocket, a versioned token, websocket without Connection: upgrade or
// on another method — and a CONNECT inside an intercepted connection (a
// tunnel in the tunnel; HTTP/2 extended CONNECT, RFC 8441) are refused
// with 400 upgrade_not_allowed: relayed, the upstream's 101 would turn
// the rest of the connection into bytes no rule decides and no audit line
// describes. Connection: upgrade without an Upgrade field upgrades
// nothing and is removed with the other hop-by-hop fields.
func checkUpgrade(r *http.Request) (bool, *refusal) {
	refuse := func(reason string) (bool, *refusal) {
		f := newRefusal(http.StatusBadRequest, codeUpgradeNotAllowed, reason, "")
		return false, &f
	}
	if r.Method == http.MethodConnect {
		what := "a CONNECT inside an intercepted connection"
		if p := r.Header.Get(":protocol"); p != "" {
			what = fmt.Sprintf("an HTTP/2 extended CONNECT for protocol %s", quoteToken(p))
		}
		return refuse(what + " is not relayed: it would open a tunnel no rule decides; use WebSocket over HTTP/1.1")
	}
	values, ok := r.Header["Upgrade"]
	if !ok {
		return false, nil
	}
	n := 0
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			tok = textproto.TrimString(tok)
			if tok == "" {
				continue
			}
			n++
			if !strings.EqualFold(tok, "websocket") {
				return refuse(fmt.Sprintf("protocol upgrade to %s is not allowed: the gateway relays only Upgrade: websocket", quoteToken(tok)))
			}
		}
	}
	if n == 0 {
		return false, nil // an empty field upgrades nothing; it is removed
	}
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1 ||
		!httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return refuse("a WebSocket upgrade must be a GET over HTTP/1.1 with Connection: upgrade")
	}
	if _, ok := webSocketKey(r.Header); !ok {
		return refuse("a WebSocket upgrade must carry one Sec-WebSocket-Key, the base64 form of 16 random bytes (RFC 6455 §4.1): the gateway relays the upgrade only when the upstream's Sec-WebSocket-Accept answers it")
	}
	return true, nil
}

// quoteToken quotes a client-sent token for a refusal, cut to 40 bytes.
func quoteToken(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// relayUpgrade completes a WebSocket upgrade the upstream accepted: the
// 101 is passed to the client, whose connection is taken over, and bytes
// are relayed both ways as a long-lived connection registered with the
// rule, workload and credential that allowed the upgrade (closed by the
// kill switch, at the identity's expiry, when idle and at the maximum
// lifetime). The upstream must have switched to websocket, answered the
// request's Sec-WebSocket-Key, and named no extension the upgrade request
// did not offer.
func (g *Gateway) relayUpgrade(w http.ResponseWriter, r *http.Request, resp *http.Response, lc *longConn) {
	up := resp.Header["Upgrade"]
	if len(up) != 1 || !strings.EqualFold(textproto.TrimString(up[0]), "websocket") {
		g.upstreamError(w, r, fmt.Errorf("upstream switched to %s, not to the websocket the client asked for", quoteToken(strings.Join(up, ", "))))
		return
	}
	if !webSocketAccepted(r.Header, resp.Header) {
		g.upstreamError(w, r, errors.New("upstream's 101 did not complete the WebSocket handshake: no Sec-WebSocket-Accept answering the request's Sec-WebSocket-Key (RFC 6455 §4.2.2), so what the client sends next could reach it as requests no rule decided"))
		return
	}
	if ext := resp.Header["Sec-Websocket-Extensions"]; len(ext) > 0 && len(r.Header["Sec-Websocket-Extensions"]) == 0 {
		// RFC 6455 §9.1: a server names only extensions the client
		// offered. The gateway removed the client's offer where it reads
		// the frames (wsPrepare, placeholders); the client, which did
		// offer it, would accept frames the gateway cannot read.
		g.upstreamError(w, r, fmt.Errorf("upstream's 101 negotiated the WebSocket extension %s (Sec-WebSocket-Extensions) that the upgrade request did not offer", quoteToken(strings.Join(ext, ", "))))
		return
	}
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		g.upstreamError(w, r, errors.New("upstream's switched connection is not writable"))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		g.upstreamError(w, r, fmt.Errorf("taking over the client connection: %w", err))
		return
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.status = http.StatusSwitchingProtocols
	}
	removeUpstreamFields(resp.Header)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{"websocket"}
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h1.WriteHeaderFields(brw.Writer, resp.Header)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		_ = conn.Close()
		_ = back.Close()
		return
	}
	g.openLong(lc)
	lc.start(conn, back)
	// What the client sent after the request is already buffered.
	if n := brw.Reader.Buffered(); n > 0 && lc.frames != nil {
		// Relayed through the frame transform with the rest.
		b, _ := brw.Reader.Peek(n)
		conn = bufferedConn{Conn: conn, r: io.MultiReader(bytes.NewReader(append([]byte(nil), b...)), conn)}
	} else if n > 0 {
		b, _ := brw.Reader.Peek(n)
		m, _ := back.Write(b)
		lc.in.Add(int64(m))
	}
	g.relay(lc, conn, back)
	g.closeLong(lc)
}

// clientGone returns the context whose end means the client went away
// (its connection closed, its stream reset, or the drain's end), when it
// has ended, else nil: the flight's parent, the inbound request's
// context. r is the outbound request, whose context is cancelled from
// that one; the abort of the upstream read (h1client's, through the
// flight's watch of the parent) may run before r's context is, so r's
// own is not the one to ask after a failed read. Without a flight (st
// nil), r's.
func clientGone(r *http.Request, st *reqState) context.Context {
	if st != nil && st.flight.parent != nil {
		if st.flight.parent.Err() != nil {
			return st.flight.parent
		}
	}
	if r.Context().Err() != nil {
		return r.Context()
	}
	return nil
}
