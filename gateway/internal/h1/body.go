package h1

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// errBodyDetached is what a request body read returns after the handler
// finished (a transport goroutine still sending it upstream).
var errBodyDetached = errors.New("h1: request body read after the handler returned")

// body is the request body the handler sees. Its Close does not drain
// (net/http's body would read an unbounded rest); after the handler the
// server detaches it, drains it itself within maxUnreadBody or closes the
// connection, and any late read from a transport goroutine fails.
type body struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	c        *conn
	eof      atomic.Bool
	n        atomic.Int64 // bytes read
	detached bool
	// broken: a read failed (a timeout, the client gone) or was aborted
	// (SetReadDeadline in the past); what is left cannot be drained.
	broken atomic.Bool
	// cont, when set, sends 100 Continue before the first read: the
	// client waits for it before sending the body, so it goes only when
	// something (the transport, once the upstream asked for the body)
	// reads it.
	// It is set before the handler runs and not changed; asked (under
	// mu) records that the first read asked for the body.
	cont  *response
	asked bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errBodyDetached
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	if b.cont != nil && !b.asked {
		b.asked = true
		b.cont.writeContinue()
	}
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	switch {
	case errors.Is(err, io.EOF):
		b.eof.Store(true)
		// The whole request is read: from now on a read of the
		// connection can tell whether the client is still there.
		b.c.watch()
	case err != nil:
		b.broken.Store(true)
	}
	return n, err
}

// Close is a no-op: the server decides what happens to an unread rest.
func (b *body) Close() error { return nil }

// drainable reports whether what is left of the body could be read to
// keep the connection: no read failed and the client was asked for it.
func (b *body) drainable() bool {
	return !b.broken.Load() && !b.awaitingContinue()
}

// awaitingContinue reports whether the client was never sent the 100
// Continue it waits for: it has not sent the body and may never.
func (b *body) awaitingContinue() bool {
	return b.cont != nil && !b.cont.continueSent()
}

// detach ends the handler's access to the body; with drain, it first
// reads and discards what is left within maxUnreadBody. It reports
// whether the body was read to its end. A read in flight (a transport
// goroutine waiting for the client) holds the lock: the caller bounds it
// with a read deadline.
func (b *body) detach(drain bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return b.eof.Load()
	}
	b.detached = true
	if b.eof.Load() {
		return true
	}
	if !drain || b.broken.Load() || b.awaitingContinue() {
		return false
	}
	n, err := io.CopyN(io.Discard, b.rc, maxUnreadBody+1)
	if errors.Is(err, io.EOF) && n <= maxUnreadBody {
		b.eof.Store(true)
	}
	return b.eof.Load()
}

// hasBody reports whether a request body is one the server wraps.
func hasBody(rc io.ReadCloser) bool { return rc != nil && rc != http.NoBody }
