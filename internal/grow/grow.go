// Package grow reads a payload whose size the peer declared before
// sending it (a WebSocket frame, an aws-chunked chunk) and that must be
// held whole, into a buffer that grows with the bytes received, not with
// the size declared: a peer that declares a large payload and then sends
// a few bytes, or nothing, makes the reader hold a few kilobytes, not
// what it declared. Allocating the declared size up front let a client
// hold that much memory per connection for the price of a frame header.
// It exists so that every reader of such payloads bounds memory the same
// way (one copy of the loop).
package grow

import (
	"errors"
	"io"
)

// ReadFull reads exactly size bytes of r and returns them in buf's
// storage when its capacity allows (buf's length is ignored), in a new
// buffer otherwise. The buffer starts at min(size, first) bytes (or buf's
// capacity) and at most doubles each time it fills, so it never holds
// more than max(first, 2 × the bytes received). On an error it returns
// the bytes that arrived and the error; an EOF before size bytes is
// io.ErrUnexpectedEOF.
func ReadFull(r io.Reader, buf []byte, size, first int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(size, max(2*cap(buf), first)))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < size {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}
