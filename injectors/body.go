package injectors

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// BufferBody reads r's body for an injector that must see it before the
// headers go out (to sign or hash it: hmac, httpsig; to put a field in it:
// slack): at most max bytes, written to each of sinks (hashes) as it is
// read, in one pass, and puts back a body that replays the bytes with its
// exact length (SetBody). A request without a body returns nil and writes
// nothing.
//
// A body longer than max is refused with an error that wraps
// ErrBodyTooLarge (the gateway answers 413 and forwards nothing); who
// names the plugin whose max_body was exceeded. Memory is bounded by max.
func BufferBody(r *http.Request, max int64, who string, sinks ...io.Writer) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, fmt.Errorf("%s: body of %d bytes must be read first and is larger than max_body %d: %w", who, r.ContentLength, max, ErrBodyTooLarge)
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
		return nil, fmt.Errorf("%s: read the request body: %w: %w", who, err, ErrRequest)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("%s: body must be read first and is larger than max_body %d: %w", who, max, ErrBodyTooLarge)
	}
	SetBody(r, buf.Bytes())
	return buf.Bytes(), nil
}

// ReadBody is BufferBody without hashes: the body, at most limit bytes,
// read and put back.
func ReadBody(who string, r *http.Request, limit int64) ([]byte, error) {
	return BufferBody(r, limit, who)
}

// SetBody replaces r's body with b, closing the old one when the new one
// is closed, and corrects ContentLength (and the Content-Length header, if
// the client sent one) to len(b).
func SetBody(r *http.Request, b []byte) {
	old := r.Body
	r.Body = replayBody{Reader: bytes.NewReader(b), old: old}
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil // sent with its length
	r.GetBody = nil
	if _, ok := r.Header["Content-Length"]; ok {
		r.Header.Set("Content-Length", fmt.Sprint(len(b)))
	}
}

// replayBody replays a buffered body and closes the original.
type replayBody struct {
	*bytes.Reader
	old io.ReadCloser
}

func (b replayBody) Close() error {
	if b.old == nil {
		return nil
	}
	return b.old.Close()
}
