package gateway

import (
	"errors"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// codeClientStalled is the audit code of a response cut off because its
// client took no byte of it for limits.write_idle_timeout.
const codeClientStalled = "client_stalled"

// limits.write_idle_timeout bounds every write to a client that stops
// reading, on every listener:
//
//   - HTTP/1.1 (the proxy listeners and the intercepted side of tunnels):
//     gateway/internal/h1 keeps the connection's write deadline that far
//     ahead of each write (h1.Limits.WriteIdleTimeout), headers, 1xx,
//     bodies and its own error answers alike;
//   - HTTP/2 connections: Go's server closes a connection to which no
//     byte could be written for that long (http.HTTP2Config.WriteByteTimeout);
//   - HTTP/2 streams: a client can keep its connection drained and still
//     take nothing of one stream by granting it no flow-control window
//     (or an initial window of zero for all), which holds a handler's
//     write forever; stalledWriter resets such a stream.
//
// The handler's write fails, the response is cut (its upstream request
// cancelled) and the audit line says client_stalled. Spliced tunnels and
// WebSockets are limits.long_lived's.

// stalledWriter is an HTTP/2 stream's ResponseWriter under
// limits.write_idle_timeout: each write (header, body, flush) marks its
// start and end in a stallWatch, and one that waits that long for the
// client's flow-control window (or the connection) resets the stream
// (http.ResponseController's SetWriteDeadline in the past), which ends
// the write with an error.
type stalledWriter struct {
	http.ResponseWriter
	w stallWatch
	// cut is set when the watch reset the stream.
	cut atomic.Bool
}

// watchWrites serves h with each HTTP/2 stream's writes under
// limits.write_idle_timeout (stalledWriter).
func (g *Gateway) watchWrites(h http.Handler) http.Handler {
	idle := g.cfg.Limits.WriteIdleTimeout.D()
	if idle <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			h.ServeHTTP(w, r)
			return
		}
		// Not pooled: nothing may write to a stream after its handler
		// returned, but a late write must not reach another's.
		sw := &stalledWriter{ResponseWriter: w}
		sw.w.init()
		sw.w.start(idle, sw)
		defer sw.w.stop()
		h.ServeHTTP(sw, r)
	})
}

// cutStalled implements stallCutter: a write waited too long.
func (s *stalledWriter) cutStalled() {
	s.cut.Store(true)
	_ = http.NewResponseController(s.ResponseWriter).SetWriteDeadline(time.Unix(1, 0))
}

// WriteHeader implements http.ResponseWriter.
func (s *stalledWriter) WriteHeader(code int) {
	s.w.begin()
	s.ResponseWriter.WriteHeader(code)
	s.w.end()
}

// Write implements http.ResponseWriter.
func (s *stalledWriter) Write(p []byte) (int, error) {
	s.w.begin()
	n, err := s.ResponseWriter.Write(p)
	s.w.end()
	if err != nil && s.cut.Load() {
		err = errClientStalled
	}
	return n, err
}

// FlushError is for http.ResponseController.
func (s *stalledWriter) FlushError() error {
	s.w.begin()
	err := http.NewResponseController(s.ResponseWriter).Flush()
	s.w.end()
	if err != nil && s.cut.Load() {
		err = errClientStalled
	}
	return err
}

// Flush implements http.Flusher.
func (s *stalledWriter) Flush() { _ = s.FlushError() }

// Unwrap is for http.ResponseController.
func (s *stalledWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// errClientStalled is a write the client took nothing of for
// limits.write_idle_timeout.
var errClientStalled = &clientStalledError{}

type clientStalledError struct{}

func (*clientStalledError) Error() string {
	return "gateway: the client took no byte of the response (limits.write_idle_timeout)"
}
func (*clientStalledError) Timeout() bool   { return true }
func (*clientStalledError) Temporary() bool { return false }

// clientStalled reports whether err is a write to the client cut off by
// limits.write_idle_timeout: an HTTP/1.1 connection's write deadline
// (gateway/internal/h1), or an HTTP/2 stream stalledWriter reset.
func clientStalled(err error) bool {
	return errors.Is(err, errClientStalled) || errors.Is(err, os.ErrDeadlineExceeded)
}
