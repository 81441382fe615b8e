package gateway

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/credgate/credgate/killswitch"
)

// A request's body and its response may stream for as long as the client
// and the upstream wish: an upload, server-sent events, a long download,
// a gRPC or other HTTP/2 stream in both directions. Such a request is not
// a long-lived connection (longlived.go: no relay, the gateway sees every
// byte as part of one request), but it must obey the kill switch as one
// does (invariant 12): a switch applied after its decision that covers its
// rule, workload or credential breaks it off at its next bytes, in either
// direction, and nothing more of it passes. The check is one atomic load
// per read of either body: the kill switch's state is compared with the
// one last checked, and matched again only when it changed.

// errStreamSwitchedOff breaks off a request body or response a kill
// switch came to cover while it streamed.
var errStreamSwitchedOff = errors.New("gateway: the kill switch disabled the request's rule, workload or credential while its body or response streamed")

// streamSwitch is what a request's body readers check the kill switch
// against: the decision's rule, workload and credential. Part of
// reqState; its zero value checks nothing.
type streamSwitch struct {
	sw                         *killswitch.Switch
	rule, workload, credential string
	// tripped is set when a read found the request covered.
	tripped atomic.Bool
}

// check reports errStreamSwitchedOff when the kill switch's state differs
// from *seen (the state the caller last checked, nil at first) and covers
// the request; it records the state in *seen. Each reader keeps its own
// seen: the request body is read on the transport's goroutine, the
// response on the handler's.
func (s *streamSwitch) check(seen **killswitch.Snapshot) error {
	if s.sw == nil {
		return nil
	}
	if s.tripped.Load() {
		return errStreamSwitchedOff
	}
	snap := s.sw.Snapshot()
	if snap == *seen {
		return nil
	}
	*seen = snap
	if snap.Match(s.rule, s.workload, s.credential) != nil {
		s.tripped.Store(true)
		return errStreamSwitchedOff
	}
	return nil
}

// switchedBody is an upstream response body read under the kill switch
// (streamSwitch). It keeps the body's chunkReader fast path (copyBody).
// Part of reqState.
type switchedBody struct {
	io.ReadCloser
	cr   chunkReader
	s    *streamSwitch
	seen *killswitch.Snapshot
}

// Read reads the body; bytes read after a switch came to cover the request
// are dropped and errStreamSwitchedOff returned.
func (b *switchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if kerr := b.s.check(&b.seen); kerr != nil {
		return 0, kerr
	}
	return n, err
}

// ReadChunk is Read for copyBody: through the body's own ReadChunk when
// it has one.
func (b *switchedBody) ReadChunk(p []byte) ([]byte, error) {
	if b.cr == nil {
		n, err := b.Read(p)
		return p[:n], err
	}
	out, err := b.cr.ReadChunk(p)
	if kerr := b.s.check(&b.seen); kerr != nil {
		return nil, kerr
	}
	return out, err
}
