package transform

import (
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestKeepLength: with KeepLength every occurrence is replaced by a
// marker of its own length, so an unencoded body keeps its
// Content-Length; an encoded one is decoded and loses it as before.
func TestKeepLength(t *testing.T) {
	const v = "s3cr3t-value-0123456789"
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	body := "a " + v + " b " + base64.StdEncoding.EncodeToString([]byte(v)) + " c"
	resp := &http.Response{Header: http.Header{"Content-Length": {strconv.Itoa(len(body))}, "X-Echo": {v}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
	c, err := s.TransformResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(body) || resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("body %d bytes (Content-Length %q, %d), want %d unchanged", len(got), resp.Header.Get("Content-Length"), resp.ContentLength, len(body))
	}
	if strings.Contains(string(got), v) || strings.Count(string(got), secret.Redacted) != 2 || c.Count() != 3 {
		t.Errorf("got %q, %d scrubbed; want both occurrences and the header scrubbed", got, c.Count())
	}
	if h := resp.Header.Get("X-Echo"); h != secret.Redacted+strings.Repeat("*", len(v)-len(secret.Redacted)) {
		t.Errorf("header %q, want the marker padded to %d bytes", h, len(v))
	}
	if got := sameLength(secret.Redacted, 8); got != "********" {
		t.Errorf("sameLength(marker, 8) = %q, want 8 '*'", got)
	}
}

// pausing delivers its parts one per Read and then blocks (fails the
// test) instead of returning more: a stream whose server pauses.
type pausing struct {
	t     *testing.T
	parts []string
}

func (p *pausing) Read(b []byte) (int, error) {
	if len(p.parts) == 0 {
		p.t.Fatal("read past what the stream has sent so far: the scrubber held back bytes that cannot begin a secret")
	}
	n := copy(b, p.parts[0])
	p.parts = p.parts[1:]
	return n, nil
}

// TestNoHoldBackWithoutAPrefix: what cannot begin a secret's form is
// passed on at once (server-sent events reach the client while the
// stream pauses); the start of a form at the end of what arrived waits.
func TestNoHoldBackWithoutAPrefix(t *testing.T) {
	const v = "s3cr3t-value-0123456789"
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	r := s.Reader(&pausing{t: t, parts: []string{"data: {\"a\":1}\n\n"}}, nil)
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: {\"a\":1}\n\n" {
		t.Fatalf("read %q, %v; want the whole event", buf[:n], err)
	}
	r = s.Reader(&pausing{t: t, parts: []string{"data: s3cr3t", "-value-0123456789\n\n"}}, nil)
	n, err = r.Read(buf)
	if err != nil || string(buf[:n]) != "data: " {
		t.Fatalf("read %q, %v; want the bytes before the start of the secret, the start held", buf[:n], err)
	}
	rest := make([]byte, 0, 64)
	for len(rest) < len(v)+2 {
		n, err = r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, buf[:n]...)
	}
	if strings.Contains(string(rest), "s3cr3t") || !strings.HasPrefix(string(rest), secret.Redacted) {
		t.Errorf("then read %q; want the secret scrubbed", rest)
	}
}
