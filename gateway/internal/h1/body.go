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
// server detaches it, drains it itself within maxUnreadBody and any late
// read from a transport goroutine fails.
type body struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	eof      atomic.Bool
	detached bool
	// broken: a read failed (a timeout, the client gone) or was aborted
	// (SetReadDeadline in the past); what is left cannot be drained.
	broken atomic.Bool
	// cont, when set, sends 100 Continue before the first read.
	cont *response
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

// Close is a no-op: the server decides what happens to an unread rest.
func (b *body) Close() error { return nil }

// detach ends the handler's access to the body and drains what is left
// within maxUnreadBody. It reports whether the body was read to its end.
func (b *body) detach() bool {
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
