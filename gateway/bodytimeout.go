package gateway

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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
// ask for more of the body, no timer runs. The timer is one per request
// with a body, reset per read.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	// minRate is limits.body_min_rate in bytes per second (0: off).
	minRate int
	// timedOut is set when the body was cut off.
	timedOut atomic.Bool

	// Used only by Read's goroutine: the timer, and the time spent
	// waiting for the client and the bytes it sent meanwhile.
	timer  *time.Timer
	waited time.Duration
	got    int64

	mu   sync.Mutex
	done bool // the handler is returning: the ResponseController may not be used
}

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
	if b.timer == nil {
		b.timer = time.AfterFunc(b.idle, b.expire)
	} else {
		b.timer.Reset(b.idle)
	}
	var t0 time.Time
	if b.minRate > 0 {
		t0 = time.Now()
	}
	n, err := b.ReadCloser.Read(p)
	if !b.timer.Stop() && err == nil {
		// The limit passed as the read returned: the client's read
		// deadline is already in the past.
		return n, errBodyIdle
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

// expire aborts the pending read, or the next one: a read deadline in the
// past ends it.
func (b *idleBody) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.timedOut.Store(true)
	_ = b.rc.SetReadDeadline(time.Unix(1, 0))
}

// stop ends the watchdog; after it the ResponseController is not used.
func (b *idleBody) stop() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}
