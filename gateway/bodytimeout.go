package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credgate/credgate/transform"
)

// codeBodyTimeout answers a request whose client stopped sending the body
// (limits.body_idle_timeout).
const codeBodyTimeout = "body_timeout"

// idleBody cuts off a request body the client stops sending: when one
// read of it waits limits.body_idle_timeout for the client, the read is
// aborted (through the server's http.ResponseController, which works on
// gateway/internal/h1's HTTP/1.1 server, net/http's HTTP/1.1 server and
// HTTP/2 streams), the read fails, and with it the upstream request,
// which the transport cancels. With limits.body_min_rate, a client that trickles the body
// slower than that rate, averaged over the time spent waiting for it
// (once that reaches body_idle_timeout), is cut off the same way. Only
// time spent waiting for the client counts: while the upstream does not
// ask for more of the body, no read is pending. The watch is a
// stallWatch, armed at the first read: no timer reset per read.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	// minRate is limits.body_min_rate in bytes per second (0: off).
	minRate int
	// timedOut is set when the body was cut off.
	timedOut atomic.Bool

	// Used only by Read's goroutine: the time spent waiting for the
	// client and the bytes it sent meanwhile.
	waited time.Duration
	got    int64
	// w is the watch, armed by the first read under mu (watching set;
	// stop ends it); only Read uses it otherwise. Not pooled: the
	// transport may still read the body after the handler returned.
	w        stallWatch
	watching bool

	// off is set when the kill switch cancelled the request
	// (inflight.go): a pending read ends with errSwitchedOff.
	off atomic.Bool

	mu   sync.Mutex
	done bool // the handler is returning: the ResponseController may not be used
}

// cutStalled implements stallCutter.
func (b *idleBody) cutStalled() { b.expire() }

// idleBody wraps r's body with the limits.body_idle_timeout watchdog,
// before anything reads it (an injector that signs the body reads it
// before it is forwarded), and returns the wrapper, nil when r has no body
// or the limit is off. The caller calls stop before the handler returns.
func (g *Gateway) idleBody(w http.ResponseWriter, r *http.Request) *idleBody {
	idle := g.cfg.Limits.BodyIdleTimeout.D()
	if idle <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle, minRate: g.cfg.Limits.BodyMinRate}
	r.Body = b
	return b
}

// cutOff reports whether b (which may be nil) was cut off.
func (b *idleBody) cutOff() bool { return b != nil && b.timedOut.Load() }

// Read implements io.Reader.
func (b *idleBody) Read(p []byte) (int, error) {
	if !b.watching {
		b.mu.Lock()
		if !b.done {
			b.w.init()
			b.w.start(b.idle, b)
			b.watching = true
		}
		b.mu.Unlock()
		if !b.watching {
			// After stop, a late read (the transport's) is not
			// watched: nothing would stop the watch.
			return b.ReadCloser.Read(p)
		}
	}
	w := &b.w
	var t0 time.Time
	if b.minRate > 0 {
		t0 = time.Now()
	}
	w.begin()
	n, err := b.ReadCloser.Read(p)
	w.end()
	if w.cut() && err == nil {
		// The limit passed as the read returned: the client's read
		// deadline is already in the past.
		return n, errBodyIdle
	}
	if err != nil && b.off.Load() {
		return n, errSwitchedOff
	}
	if err != nil && b.timedOut.Load() {
		// Whoever reads the body (the transport, an injector) can tell
		// why with errors.Is(err, errBodyIdle).
		return n, errBodyIdle
	}
	if b.minRate > 0 && err == nil {
		// A trickle: judged once the client was waited for as long as
		// body_idle_timeout in all.
		b.waited += time.Since(t0)
		b.got += int64(n)
		if b.waited >= b.idle && float64(b.got) < float64(b.minRate)*b.waited.Seconds() {
			b.expire()
			return n, errBodyIdle
		}
	}
	return n, err
}

// errBodyIdle is what a body read returns when it waited too long.
var errBodyIdle = &bodyIdleError{}

type bodyIdleError struct{}

func (*bodyIdleError) Error() string {
	return "gateway: the client stalled the request body (limits.body_idle_timeout, limits.body_min_rate)"
}
func (*bodyIdleError) Timeout() bool   { return true }
func (*bodyIdleError) Temporary() bool { return false }

// expire aborts the pending read, or the next one, for the idle timeout.
func (b *idleBody) expire() { b.abort(&b.timedOut) }

// switchOff aborts the pending read, or the next one, for the kill
// switch: the transport sending the body upstream waits for its read to
// end before it returns (a client streaming a body may send nothing more
// for a long time).
func (b *idleBody) switchOff() {
	if b != nil {
		b.abort(&b.off)
	}
}

// abort marks why (why) and ends the pending read, or the next one, with
// a read deadline in the past, unless the body is done.
func (b *idleBody) abort(why *atomic.Bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	why.Store(true)
	_ = b.rc.SetReadDeadline(time.Unix(1, 0))
}

// stop ends the watchdog; after it the ResponseController is not used.
func (b *idleBody) stop() {
	b.mu.Lock()
	b.done = true
	watching := b.watching
	b.mu.Unlock()
	if watching {
		b.w.stop() // not under mu: a cut running takes it (abort)
	}
}

// How a read of the client's request body failed (clientBody.fail).
const (
	bodyReadOK        uint32 = iota
	bodyReadGone             // the client's connection or stream ended before the body did
	bodyReadMalformed        // the body's framing is broken (chunked encoding, a length it does not keep)
)

// clientBody is the request body as the client's connection delivers it,
// under every other reader of it: the limits.body_idle_timeout watchdog,
// an injector that reads it to sign it, placeholder substitution and the
// upstream client. It records how the first failed read failed, so that
// whichever of those met the failure, the answer and the audit line say it
// was the client's: 499 client_aborted when the client went away
// mid-body, 400 bad_request when the framing was malformed (the client is
// still there to be told). It lives in the exchange: no allocation.
//
// A read that fails once the gateway itself has closed the body (the
// upstream client closes it when the upstream answered without reading
// it all, or when the exchange is cut for another reason; HTTP/2's server
// then fails a pending read with "body closed by handler") is not the
// client's failure and records nothing: the exchange's own cause stays
// the one the answer and the audit line give.
type clientBody struct {
	io.ReadCloser
	ctx    context.Context // the request's: cancelled when an HTTP/2 client resets the stream
	fail   atomic.Uint32
	closed atomic.Bool // Close was called: later read failures are ours
}

// wrapClientBody puts b under r's body, before anything else wraps or
// reads it; a request without a body is left alone.
func wrapClientBody(b *clientBody, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	b.ReadCloser, b.ctx = r.Body, r.Context()
	r.Body = b
}

// Read implements io.Reader.
func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.fail.Load() == bodyReadOK && !b.closed.Load() {
		b.fail.CompareAndSwap(bodyReadOK, classifyBodyErr(b.ctx, err))
	}
	return n, err
}

// Close implements io.Closer: it marks the body closed before closing
// it, so that a read the close fails is not taken for the client's.
func (b *clientBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

// classifyBodyErr tells a client that went away (the connection closed or
// reset before the body's end, a read deadline, a cancelled stream) from
// a body whose framing is malformed (everything else the server's body
// reader returns: a bad chunk size, more or fewer bytes than declared).
func classifyBodyErr(ctx context.Context, err error) uint32 {
	var ne net.Error
	switch {
	case ctx != nil && ctx.Err() != nil,
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return bodyReadGone
	}
	return bodyReadMalformed
}

// failure returns how a read of b failed; b may be nil.
func (b *clientBody) failure() uint32 {
	if b == nil {
		return bodyReadOK
	}
	return b.fail.Load()
}

// clientBodyRefusal is the refusal of a request whose body the client did
// not deliver, and whether its read failed that way at all: 499
// client_aborted when the client went away mid-body (the answer, written
// for a client that only half-closed, reaches nobody), 400 bad_request
// when the framing was malformed. what says how far the request got ("the
// request was not forwarded", "the upstream request was cancelled"). A
// body the idle watchdog ib cut off is not the client's going (the
// callers answer 408 body_timeout): false.
func clientBodyRefusal(b *clientBody, ib *idleBody, what, rule string) (refusal, bool) {
	if ib.cutOff() {
		return refusal{}, false
	}
	switch b.failure() {
	case bodyReadGone:
		return newRefusal(statusClientClosed, codeRequestBodyAborted, "the client closed the request before its body ended", rule), true
	case bodyReadMalformed:
		return newRefusal(http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("the request body is malformed (its chunked encoding is broken, or it does not keep the length it declared); %s", what), rule), true
	}
	return refusal{}, false
}

// stallTicks is how many times per idle limit a stallWatch's timer
// fires: a stalled read is cut after between idle and
// idle*(stallTicks+1)/stallTicks.
const stallTicks = 4

// stallCutter is what a stallWatch cuts off when a read stalls.
type stallCutter interface{ cutStalled() }

// stallWatch cuts off a body whose peer stalls: when one read of it waits
// idle for the peer, the cutter's cutStalled runs (once). It watches the
// client's request bodies (idleBody, limits.body_idle_timeout) and the
// upstream's response bodies (upstreamBody,
// upstream.response_idle_timeout). Reads mark their start and end in a
// counter (two atomic adds, no timer reset and no clock reading per
// read); one timer per body, firing every idle/stallTicks while the body
// is watched, cuts when it saw the same read pending stallTicks firings
// in a row. Only a pending read counts: the time between reads, while the
// reader's own consumer is slow (an upstream slow to take the request
// body, a client slow to take the response), does not.
type stallWatch struct {
	t    *time.Timer
	tick time.Duration
	// seq is incremented when a read begins and when it ends: odd while
	// one is pending.
	seq atomic.Uint64
	// fired is set when the watch cut.
	fired atomic.Bool

	// mu orders fire against start and stop; done is set by stop or a
	// cut: the timer is not armed again, nothing more is cut.
	mu    sync.Mutex
	done  bool
	seen  uint64 // seq at the last firing
	ticks int    // firings in a row that saw the read seen pending
	c     stallCutter
	// wg counts the armed timer or its running fire: stop waits for it,
	// so that a watch is reused only when no fire of it runs.
	wg sync.WaitGroup
}

// stallWatches pools stallWatches with their timers: an upstream
// response's costs no allocation.
var stallWatches = sync.Pool{New: func() any { return newStallWatch() }}

// newStallWatch returns a stopped stallWatch.
func newStallWatch() *stallWatch {
	w := &stallWatch{}
	w.init()
	return w
}

// init makes w's timer, stopped.
func (w *stallWatch) init() {
	w.t = time.AfterFunc(time.Hour, w.fire)
	w.t.Stop()
}

// start arms w for one body: c is cut once a read waits idle.
func (w *stallWatch) start(idle time.Duration, c stallCutter) {
	w.seq.Store(0)
	w.fired.Store(false)
	w.mu.Lock()
	w.done, w.seen, w.ticks, w.c = false, 0, 0, c
	w.tick = idle / stallTicks
	w.wg.Add(1)
	w.t.Reset(w.tick)
	w.mu.Unlock()
}

// begin and end bracket one read.
func (w *stallWatch) begin() { w.seq.Add(1) }
func (w *stallWatch) end()   { w.seq.Add(1) }

// cut reports whether w (which may be nil) cut its body.
func (w *stallWatch) cut() bool { return w != nil && w.fired.Load() }

func (w *stallWatch) fire() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		w.wg.Done()
		return
	}
	if s := w.seq.Load(); s&1 == 1 && s == w.seen {
		w.ticks++
	} else {
		w.seen, w.ticks = s, 0
	}
	if w.ticks < stallTicks {
		w.t.Reset(w.tick)
		w.mu.Unlock()
		return
	}
	w.done = true
	w.fired.Store(true)
	c := w.c
	w.mu.Unlock()
	c.cutStalled()
	w.wg.Done()
}

// stop ends the watch and waits for a fire that is running: nothing is
// cut after it returns.
func (w *stallWatch) stop() {
	w.mu.Lock()
	w.done = true
	if w.t.Stop() {
		w.wg.Done() // armed, not fired: no fire will say it
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// codeUpstreamIdle cuts off a response whose upstream stopped sending the
// body (upstream.response_idle_timeout).
const codeUpstreamIdle = "upstream_idle"

// errUpstreamIdle is the cause of an upstream request cancelled because
// its response body stalled, and what a read of that body returns.
var errUpstreamIdle = &upstreamIdleError{}

type upstreamIdleError struct{}

func (*upstreamIdleError) Error() string {
	return "gateway: the upstream stalled the response body (upstream.response_idle_timeout)"
}
func (*upstreamIdleError) Timeout() bool   { return true }
func (*upstreamIdleError) Temporary() bool { return false }

// upstreamBody is an upstream response's body under the
// upstream.response_idle_timeout watchdog: when one read of it waits that
// long for the upstream, the upstream request is cancelled (both the
// h1client and net/http's Transport close the connection, or reset the
// HTTP/2 stream, when its context ends), the read fails with
// errUpstreamIdle, and the forwarder cuts the client's response
// (upstream_idle). It is the raw body, under any scrubber or custody
// reader, so only the upstream's silence counts: while the client is slow
// to take what was read, no read is pending. It lives in the request's
// reqState and its stallWatch is pooled: a response costs no allocation
// for it.
type upstreamBody struct {
	io.ReadCloser
	w      *stallWatch
	cancel canceller
}

// watchResponse puts resp's body under b, cancelling the request's
// flight (cancel) when it stalls; it reports false, leaving resp alone,
// for a response without a body, and for one whose whole body is in
// memory already (transform.ArrivedWhole: the common small answer the
// h1client read with its headers), whose reads wait for nothing from the
// upstream and so cannot stall: no timer is armed and stopped for it. The
// caller calls b.release after the last use of resp.Body.
func (g *Gateway) watchResponse(b *upstreamBody, resp *http.Response, cancel canceller) bool {
	idle := g.cfg.Upstream.ResponseIdleTimeout.D()
	if idle <= 0 || cancel == nil || resp.Body == nil || resp.Body == http.NoBody || transform.ArrivedWhole(resp.Body) {
		return false
	}
	b.ReadCloser, b.cancel = resp.Body, cancel
	b.w = stallWatches.Get().(*stallWatch)
	b.w.start(idle, b)
	resp.Body = b
	return true
}

// cutStalled implements stallCutter.
func (b *upstreamBody) cutStalled() { b.cancel.cancelCause(errUpstreamIdle) }

// Read implements io.Reader.
func (b *upstreamBody) Read(p []byte) (int, error) {
	b.w.begin()
	n, err := b.ReadCloser.Read(p)
	b.w.end()
	if err != nil && err != io.EOF && b.w.cut() {
		// Whoever reads the body (the forwarder, a scrubber, custody)
		// can tell why with errors.Is(err, errUpstreamIdle).
		return n, errUpstreamIdle
	}
	return n, err
}

// Arrived implements transform.Arrival: whether the rest of the body
// under it is in memory.
func (b *upstreamBody) Arrived() bool { return transform.ArrivedWhole(b.ReadCloser) }

// stalled reports whether the watchdog cut the body.
func (b *upstreamBody) stalled() bool { return b.w.cut() }

// release stops the watchdog and returns its stallWatch to the pool; the
// body is not read after it.
func (b *upstreamBody) release() {
	w := b.w
	w.stop()
	b.w = nil
	stallWatches.Put(w)
}

// upstreamIdleRefusal answers a request whose upstream stalled the
// response body before anything of the response reached the client
// (custody or a decoder reads the body first).
func (g *Gateway) upstreamIdleRefusal(rule string) refusal {
	return newRefusal(http.StatusGatewayTimeout, codeUpstreamIdle,
		fmt.Sprintf("the upstream sent no byte of the response body for %s (upstream.response_idle_timeout); the upstream request was cancelled", g.cfg.Upstream.ResponseIdleTimeout.D()), rule)
}
