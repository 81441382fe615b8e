package injectors

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// BufferBody reads r's body for an injector that must sign or hash it
// before the headers go out (hmac, httpsig): at most max bytes, written
// to each of sinks (hashes) as it is read, in one pass, and puts back a
// body that replays the bytes (closing the original when it is closed).
// A request without a body returns nil and writes nothing.
//
// A body longer than max is refused with an error that wraps
// ErrBodyTooLarge (the gateway answers 413 and forwards nothing); who
// names the plugin whose max_body was exceeded. Memory is bounded by max.
func BufferBody(r *http.Request, max int64, who string, sinks ...io.Writer) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, fmt.Errorf("%s: body of %d bytes must be signed and is larger than max_body %d: %w", who, r.ContentLength, max, ErrBodyTooLarge)
	}
	// A declared length (at most max, checked above) sizes the buffer
	// once; an unknown one starts small and grows.
	n := r.ContentLength
	if n < 0 {
		n = 64 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	var src io.Reader = io.LimitReader(r.Body, max+1)
	if len(sinks) > 0 {
		src = io.TeeReader(src, io.MultiWriter(sinks...))
	}
	if _, err := buf.ReadFrom(src); err != nil {
		return nil, fmt.Errorf("%s: read the body to sign it: %w", who, err)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("%s: body must be signed and is larger than max_body %d: %w", who, max, ErrBodyTooLarge)
	}
	r.Body = replayBody{Reader: bytes.NewReader(buf.Bytes()), Closer: r.Body}
	return buf.Bytes(), nil
}

// replayBody replays a buffered body and closes the original.
type replayBody struct {
	io.Reader
	io.Closer
}
