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
