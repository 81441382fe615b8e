package injectors

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// ReadBody reads r's body, at most limit bytes, and puts back a body that
// replays it, for injectors that must see a body before they rewrite the
// request (to sign it, or to put a field in it). A body larger than limit
// (declared or read) is an error wrapping ErrBodyTooLarge, and the gateway
// answers 413; who is the injector's name, for the error. A request
// without a body returns nil.
func ReadBody(who string, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%s: body of %d bytes is larger than max_body %d: %w", who, r.ContentLength, limit, ErrBodyTooLarge)
	}
	n := r.ContentLength
	if n < 0 || n > 64<<10 {
		n = 64 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return nil, fmt.Errorf("%s: read the request body: %w", who, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: body is larger than max_body %d: %w", who, limit, ErrBodyTooLarge)
	}
	SetBody(r, buf.Bytes())
	return buf.Bytes(), nil
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
