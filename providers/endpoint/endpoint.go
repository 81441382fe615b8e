// Package endpoint is the HTTP round trip a provider makes to its
// credential endpoint (a token URL, an installation-token API): send the
// request, read a bounded answer, and class a failure to get any answer
// as providers.ErrUnavailable, so that the gateway answers 503 and the
// caller may retry. It exists so that providers share one copy of that
// plumbing; what an answer means stays with each provider.
package endpoint

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/credgate/credgate/providers"
)

// MaxBody is the most of an answer Do reads: a token answer is a few
// kilobytes; a larger one is cut, and then fails to parse.
const MaxBody = 1 << 20

// Do sends req with c and returns the response, whose body is closed,
// and at most MaxBody bytes of that body. When req's context is done,
// the error is the context's error. Any other transport failure, and a
// body that cannot be read, wraps providers.ErrUnavailable; its text is
// the cause without the URL (callers prefix an operation naming the
// endpoint: fmt.Errorf("%s: %w", op, err)). Every status is returned for
// the caller to word.
func Do(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, nil, ctxErr
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the URL
		}
		return nil, nil, fmt.Errorf("%w: %w", err, providers.ErrUnavailable)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer: %w: %w", err, providers.ErrUnavailable)
	}
	return resp, data, nil
}

// Unavailable reports whether status means "try again later": 429 Too
// Many Requests or any 5xx. Providers wrap providers.ErrUnavailable for
// it, so that the gateway answers 503 rather than 502.
func Unavailable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}
