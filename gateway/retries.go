package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// upstreamAttempts bounds how many times net/http's transports may send
// one request upstream. They send a request again, on the same
// connection or a new one, when the upstream says it did not process it:
// an HTTP/2 GOAWAY whose last stream ID is below the request's, a
// REFUSED_STREAM or PROTOCOL_ERROR reset, a connection that can take no
// new stream; and an HTTP/1.1 kept-alive connection closed as the request
// went out. Go's HTTP/2 client retries on the same connection up to 7
// times with backoff (about 63 s in all, response_header_timeout applying
// to each try alone), and net/http's Transport dials again, without
// end, whenever the HTTP/2 connection it dialled is unusable when the
// request comes to it: an upstream answering every request with a
// GOAWAY had the request, and its credential, sent thousands of times a
// second until the client gave up. Legitimate retries (a graceful GOAWAY
// racing the request, a connection the upstream closed while idle) take
// one or two attempts more.
const upstreamAttempts = 4

// Causes of a request cancelled between attempts (upstreamTries).
var (
	errUpstreamRetries        = errors.New("gateway: the upstream refused the request on every attempt")
	errUpstreamRetryTimeout   = errors.New("gateway: upstream.response_header_timeout passed while the upstream refused the request")
	errUpstreamBodyStall      = errors.New("gateway: the upstream took no byte of the request body for upstream.response_idle_timeout")
	errUpstreamBodyUnanswered = errors.New("gateway: the upstream neither took the rest of the request body nor answered within upstream.response_header_timeout")
)

// upstreamTries counts the attempts of one upstream request (GotConn):
// past upstreamAttempts, or upstream.response_header_timeout after the
// first attempt, the request is cancelled through its in-flight context
// (cancel). Part of reqState: no allocation of its own; the timer is
// made only when a request is sent again.
type upstreamTries struct {
	n      int
	first  time.Time
	limit  time.Duration
	cancel canceller
	timer  *time.Timer
}

// start begins counting the attempts of one round trip (the request, or
// its reissue after a 401) under response_header_timeout limit; cancel
// ends the request.
func (u *upstreamTries) start(limit time.Duration, cancel canceller) {
	u.stop()
	u.n, u.limit, u.cancel = 0, limit, cancel
}

// stop ends the count once the round trip returned.
func (u *upstreamTries) stop() {
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
}

// GotConn implements h1client.Attempts: the h1client calls it before
// each attempt to send the outbound request (it sends one at most twice),
// and net/http's transports call it as the request's httptrace GotConn
// hook (h1client.WithTrace), on the goroutine of the round trip. The
// attempt past upstreamAttempts is cancelled (the transport may still
// write it as the cancellation lands; it sends no further one), and the
// second arms a timer that cancels the request when
// response_header_timeout has passed since the first, so that the
// backoff between tries ends with it.
func (st *reqState) GotConn(info httptrace.GotConnInfo) {
	st.h2.gotConn(info)
	u := &st.tries
	if u.cancel == nil {
		return
	}
	u.n++
	switch {
	case u.n == 1:
		u.first = time.Now()
	case u.n > upstreamAttempts:
		u.cancel.cancelCause(errUpstreamRetries)
	case u.n == 2 && u.limit > 0:
		left := u.limit - time.Since(u.first)
		if left <= 0 {
			u.cancel.cancelCause(errUpstreamRetryTimeout)
			return
		}
		cancel := u.cancel
		u.timer = time.AfterFunc(left, func() { cancel.cancelCause(errUpstreamRetryTimeout) })
	}
}

// retriesRefusal is the answer to a request upstreamTries or uploadWatch
// cancelled: 502 when the upstream refused it upstreamAttempts times, 504
// when it kept refusing it for response_header_timeout or stalled its
// body.
func retriesRefusal(r *http.Request, st *reqState) (refusal, bool) {
	if st == nil {
		return refusal{}, false
	}
	switch cause := context.Cause(r.Context()); {
	case errors.Is(cause, errUpstreamRetries):
		return newRefusal(http.StatusBadGateway, codeUpstreamError,
			fmt.Sprintf("%s refused the request %d times without processing it (an HTTP/2 GOAWAY or stream reset before its answer, or a connection closed under it); it was not sent again", r.URL.Host, upstreamAttempts), ""), true
	case errors.Is(cause, errUpstreamRetryTimeout):
		return newRefusal(http.StatusGatewayTimeout, codeUpstreamTimeout,
			fmt.Sprintf("%s did not answer within upstream.response_header_timeout (%s): it refused the request %d times without processing it", r.URL.Host, st.tries.limit, st.tries.n), ""), true
	case errors.Is(cause, errUpstreamBodyStall):
		return newRefusal(http.StatusGatewayTimeout, codeUpstreamTimeout,
			fmt.Sprintf("%s took no byte of the request body for %s (upstream.response_idle_timeout: an HTTP/2 upstream that gives no flow-control window, or one that stops reading) and sent no answer; the upstream request was cancelled", r.URL.Host, st.upload.idle), ""), true
	case errors.Is(cause, errUpstreamBodyUnanswered):
		return newRefusal(http.StatusGatewayTimeout, codeUpstreamTimeout,
			fmt.Sprintf("%s did not answer within upstream.response_header_timeout (%s) of the request body's end (an HTTP/2 upstream that gives no flow-control window, or one that stops reading, holds its last part); the upstream request was cancelled", r.URL.Host, st.upload.header), ""), true
	}
	return refusal{}, false
}

// uploadWatch cuts a request whose upstream stops taking its body before
// it answers: an HTTP/2 upstream that gives the stream no flow-control
// window (SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE), an
// HTTP/1.1 one that stops reading. net/http's response_header_timeout
// starts only once the body is written whole, so such a request waited
// until the client gave up, holding the handler and the upstream stream.
// Only time the upstream makes the gateway wait counts, from the round
// trip's start until the response's headers arrive: while a read of the
// client's body is pending (body_idle_timeout's to bound), nothing is
// measured. Until the client's body ended, the upstream may leave it
// untaken for upstream.response_idle_timeout (idle), the bound on an
// upstream that stalls a response; once the gateway has read it whole
// (the transport may still be unable to write it), the upstream has
// upstream.response_header_timeout (header) from that read to answer,
// as it has from the body's end on the wire. The request is then
// cancelled through its in-flight context (cancel). Part of reqState; its
// timer is made for requests with a body only.
type uploadWatch struct {
	idle, header time.Duration
	cancel       canceller
	start        time.Time
	t            *time.Timer
	// pending counts the body's reads in progress; last is when the last
	// one ended, as time since start; eof is set when one returned the
	// body's end (or failed); done when the watch stops or cut.
	pending atomic.Int32
	last    atomic.Int64
	eof     atomic.Bool
	done    atomic.Bool
}

// watch starts w for one round trip whose body b the transport reads.
func (w *uploadWatch) watch(b *countingBody, idle, header time.Duration, cancel canceller) {
	if idle <= 0 || cancel == nil {
		return
	}
	if header <= 0 {
		header = idle
	}
	w.idle, w.header, w.cancel, w.start = idle, header, cancel, time.Now()
	w.last.Store(0)
	w.eof.Store(false)
	w.done.Store(false)
	b.w = w
	if w.t == nil {
		w.t = time.AfterFunc(idle, w.fire)
	} else {
		w.t.Reset(idle)
	}
}

// stop ends the watch: the response's headers arrived, or the round trip
// failed.
func (w *uploadWatch) stop() {
	if w.t != nil {
		w.done.Store(true)
		w.t.Stop()
	}
}

// begin and end bracket one read of the body (countingBody.Read).
func (w *uploadWatch) begin() { w.pending.Add(1) }

func (w *uploadWatch) end(err error) {
	w.last.Store(int64(time.Since(w.start)))
	if err != nil {
		w.eof.Store(true)
	}
	w.pending.Add(-1)
}

// limit is how long the upstream may now make the gateway wait, and the
// cause of a cut.
func (w *uploadWatch) limit() (time.Duration, error) {
	if w.eof.Load() {
		return w.header, errUpstreamBodyUnanswered
	}
	return w.idle, errUpstreamBodyStall
}

func (w *uploadWatch) fire() {
	if w.done.Load() {
		return
	}
	limit, cause := w.limit()
	if w.pending.Load() > 0 {
		w.t.Reset(limit)
		return
	}
	idle := time.Since(w.start) - time.Duration(w.last.Load())
	if idle >= limit {
		w.done.Store(true)
		w.cancel.cancelCause(cause)
		return
	}
	w.t.Reset(limit - idle)
}
