package httpclient

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// maxSentBody is the most of a request body whose bytes are redacted
// from the errors of its exchange; a token request is a few hundred
// bytes.
const maxSentBody = 64 << 10

// redacting is the RoundTripper of a NewClient client: the errors of an
// exchange, the round trip's and those of reads of the response body,
// carry nothing of what the request sent. Their texts can quote what the
// endpoint answered (Go's HTTP/1.1 parser quotes a status or header line
// it cannot read: `malformed HTTP status code "Yzpz..."`), and an
// endpoint echoing the request there put a client secret, an assertion or
// a subject token in the provider's error, which the gateway logs.
type redacting struct{ rt http.RoundTripper }

func (t redacting) RoundTrip(r *http.Request) (*http.Response, error) {
	return exchange(r, t.rt.RoundTrip)
}

// Doer sends a request: an *http.Client, the AWS SDK's HTTPClient.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// RedactErrors returns d with the errors of its exchanges redacted as a
// NewClient client's are (SentRedactedError), for clients a library
// builds (the AWS SDK's).
func RedactErrors(d Doer) Doer { return redactingDoer{d} }

type redactingDoer struct{ d Doer }

func (d redactingDoer) Do(r *http.Request) (*http.Response, error) { return exchange(r, d.d.Do) }

// exchange sends r with send; an error of the exchange, and of reads of
// the response body, is a SentRedactedError of r. A body of known length
// without GetBody (a library's stream) is copied aside, up to
// maxSentBody, as it is sent, so that its bytes are redacted too.
func exchange(r *http.Request, send func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	var kept *keptBody
	if r.GetBody == nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0 {
		kept = &keptBody{ReadCloser: r.Body}
		r2 := *r
		r2.Body = kept
		r = &r2
	}
	resp, err := send(r)
	if err != nil {
		return resp, redactSent(r, kept, err)
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &redactingBody{ReadCloser: resp.Body, r: r, kept: kept}
	}
	return resp, nil
}

// keptBody keeps the first maxSentBody bytes read from a request body.
type keptBody struct {
	io.ReadCloser
	mu  sync.Mutex
	buf []byte
}

func (k *keptBody) Read(p []byte) (int, error) {
	n, err := k.ReadCloser.Read(p)
	k.mu.Lock()
	if room := maxSentBody - len(k.buf); room > 0 {
		k.buf = append(k.buf, p[:min(n, room)]...)
	}
	k.mu.Unlock()
	return n, err
}

func (k *keptBody) bytes() []byte {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.buf)
}

// CloseIdleConnections passes on to the transport (http.Client calls it).
func (t redacting) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// redactingBody redacts what its request sent from its read errors (a
// trailer line it cannot read is quoted too).
type redactingBody struct {
	io.ReadCloser
	r    *http.Request
	kept *keptBody
}

func (b *redactingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = redactSent(b.r, b.kept, err)
	}
	return n, err
}

// SentRedactedError is an error of an exchange whose text has every run
// of 8 bytes or more of what the request sent — its header values (a
// Basic header's decoded user and password too), its query values and
// its body (and a form body's values) — redacted, in every form a
// response scrubber knows. Unwrap returns the original error, for
// errors.Is and errors.As; print this one, never that.
type SentRedactedError struct {
	err  error
	text string
}

func (e *SentRedactedError) Error() string { return e.text }

// Unwrap returns the error as the transport returned it.
func (e *SentRedactedError) Unwrap() error { return e.err }

// redactSent returns err as a SentRedactedError of r, whose body, when it
// has no GetBody, is what kept saw of it.
func redactSent(r *http.Request, kept *keptBody, err error) error {
	if _, ok := err.(*SentRedactedError); ok {
		return err
	}
	var vals []secret.Value
	add := func(v string) {
		if v != "" {
			vals = append(vals, secret.New(v))
		}
	}
	for _, vs := range r.Header {
		for _, v := range vs {
			add(v)
			if scheme, cred, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
					user, pass, _ := strings.Cut(string(dec), ":")
					add(string(dec))
					add(user)
					add(pass)
				}
			}
		}
	}
	form := func(raw string) {
		q, _ := url.ParseQuery(raw)
		for _, vs := range q {
			for _, v := range vs {
				add(v)
			}
		}
	}
	if r.URL != nil {
		form(r.URL.RawQuery)
	}
	b := kept.bytes()
	if r.GetBody != nil {
		if body, gerr := r.GetBody(); gerr == nil {
			b, _ = io.ReadAll(io.LimitReader(body, maxSentBody))
			_ = body.Close()
		}
	}
	add(string(b))
	form(string(b))
	s := transform.NewScrubber(vals, transform.ScrubOptions{KeepLength: true})
	text, _ := s.Pieces([]byte(err.Error()))
	return &SentRedactedError{err: err, text: string(text)}
}

// RedactValues returns err as a SentRedactedError whose text has each of
// values (8 bytes or more; shorter ones are left, as a match by chance
// would garble the message) redacted in every form a response scrubber
// knows, for errors a library builds from an endpoint's answer after the
// exchange (the AWS SDK quotes STS's error message, which an endpoint
// echoing the request fills with the web identity token it was sent).
// Unwrap returns err; nil stays nil.
func RedactValues(err error, values ...string) error {
	if err == nil {
		return nil
	}
	var vals []secret.Value
	for _, v := range values {
		if len(v) >= 8 {
			vals = append(vals, secret.New(v))
		}
	}
	if len(vals) == 0 {
		return err
	}
	s := transform.NewScrubber(vals, transform.ScrubOptions{KeepLength: true})
	text, _ := s.Pieces([]byte(err.Error()))
	return &SentRedactedError{err: err, text: string(text)}
}
