package httpclient

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxAnswer is the most of one answer body a client wrapped by Guard
// reads: credential endpoints answer in kilobytes (a Vault secret or an
// STS document), so an answer beyond it is broken or hostile, and reading
// it to the end would hold the gateway's memory for as long as the
// endpoint keeps sending.
const MaxAnswer = 4 << 20

// ErrAnswerTooLarge is the error reading an answer body past Guard's
// limit returns.
var ErrAnswerTooLarge = errors.New("the answer is larger than the gateway reads from a credential endpoint")

// RedirectError is the error of an exchange whose answer was a redirect,
// under Guard: a credential endpoint that redirects is misconfigured (or
// hostile), and following it would send what the request carries (a
// token header, a client secret, a signed assertion, a login's secret)
// to another place.
type RedirectError struct {
	// Status is the redirect's status code.
	Status int
	// Location is where it pointed, as Display shows it (no user
	// information, query or fragment); "" when it had none.
	Location string
}

func (e *RedirectError) Error() string {
	to := "no Location"
	if e.Location != "" {
		to = e.Location
	}
	return fmt.Sprintf("the endpoint answered a redirect (HTTP %d to %s), which credgate never follows: it would carry the request's secrets elsewhere; configure the address the redirect points to, if it is the right one", e.Status, to)
}

// Guard returns a RoundTripper sending through rt whose exchanges fail
// with a *RedirectError on a redirect (any 3xx but 304), whatever the
// client or library on top would do with it, and whose answer bodies fail
// with ErrAnswerTooLarge past limit bytes (MaxAnswer when limit <= 0). It
// is for clients a library builds and drives (vault/api follows one
// redirect itself; the AWS SDK follows 307 and 308 and reads whole
// answers), where NewClient's CheckRedirect and a caller's bounded read
// cannot be applied.
func Guard(rt http.RoundTripper, limit int64) http.RoundTripper {
	if limit <= 0 {
		limit = MaxAnswer
	}
	return guard{rt: rt, limit: limit}
}

type guard struct {
	rt    http.RoundTripper
	limit int64
}

func (g guard) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := g.rt.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.StatusCode != http.StatusNotModified {
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if u, err := r.URL.Parse(loc); err == nil && loc != "" {
			loc = Display(u.String())
		} else if loc != "" {
			loc = Display(loc)
		}
		return nil, &RedirectError{Status: resp.StatusCode, Location: loc}
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &limitedBody{ReadCloser: resp.Body, left: g.limit}
	}
	return resp, nil
}

// CloseIdleConnections passes on to rt, so that a client's
// CloseIdleConnections still reaches the transport.
func (g guard) CloseIdleConnections() {
	if c, ok := g.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// limitedBody fails with ErrAnswerTooLarge once more than left bytes
// were read.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, ErrAnswerTooLarge
	}
	// Read one byte beyond the limit, to tell an answer of exactly limit
	// bytes from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), ErrAnswerTooLarge
	}
	return n, err
}
