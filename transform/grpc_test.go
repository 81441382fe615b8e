package transform

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// grpcMessage frames payload as one uncompressed gRPC message.
func grpcMessage(payload string) string {
	var p [5]byte
	binary.BigEndian.PutUint32(p[1:], uint32(len(payload)))
	return string(p[:]) + payload
}

// errPaused is what pausedBody returns once its parts are read: the
// stream pauses there (a test reads what was passed on before it).
var errPaused = errors.New("paused")

type pausedBody struct{ parts []string }

func (p *pausedBody) Read(b []byte) (int, error) {
	if len(p.parts) == 0 {
		return 0, errPaused
	}
	n := copy(b, p.parts[0])
	if p.parts[0] = p.parts[0][n:]; p.parts[0] == "" {
		p.parts = p.parts[1:]
	}
	return n, nil
}

func (p *pausedBody) Close() error { return nil }

// scrubbedGRPC scrubs a response of content type ct whose body is parts
// and returns what was read of it, and the error that ended the reading.
func scrubbedGRPC(t *testing.T, s *Scrubber, ct string, parts ...string) (string, error) {
	t.Helper()
	resp := &http.Response{Header: http.Header{"Content-Type": {ct}}, ContentLength: -1, Body: &pausedBody{parts: parts}}
	if _, err := s.TransformResponse(resp); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 512)
	for {
		n, err := resp.Body.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return string(out), err
		}
	}
}

// TestGRPCMessagesNotHeldBack is the class of "a gRPC stream stalls in the
// scrubber": a message whose last bytes begin a form of a secret (every
// form, every length of beginning) was held back until the next message
// arrived, so a server-streaming call delivered each such message one
// message late and a bidirectional one (the server waits for the client's
// next message, the client for the whole answer) hung until an idle
// timeout. For gRPC and gRPC-Web bodies, the whole message now passes
// before the stream pauses; other bodies (gRPC-Web's base64 text form
// included) still hold the beginning back. A body that ends a message at
// such a beginning and then goes on with anything but a message prefix
// (the rest of the secret) is cut there: the rest never passes. A secret
// one of whose forms has a byte that can begin a message prefix is held
// back as before.
func TestGRPCMessagesNotHeldBack(t *testing.T) {
	const v = "gw-s3cr3t-value-0123456789"
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	fs := forms(v, DefaultMinLength)
	released := []string{"application/grpc", "application/grpc+proto", "application/grpc+json", "Application/GRPC; charset=utf-8", "application/grpc-web", "application/grpc-web+proto"}
	held := []string{"application/grpc-web-text", "application/octet-stream", "text/event-stream", "application/grpcx", ""}
	var failed, cases int
	for _, f := range fs {
		for k := 1; k < len(f); k++ {
			first := grpcMessage("hello " + f[:k])
			// The beginning of one form may be another whole form (a
			// base64 form without its padding): the message scrubbed.
			b, _ := s.Bytes([]byte(first))
			whole := string(b)
			for _, ct := range released {
				cases++
				got, err := scrubbedGRPC(t, s, ct, first)
				if got != whole || !errors.Is(err, errPaused) {
					failed++
					if failed < 10 {
						t.Errorf("%s, message ending in %q: passed %q (%v) before the pause, want the whole message", ct, f[:k], got, err)
					}
				}
				// The rest of the form, sent as if the message went on:
				// never passed.
				// (Looked for after the first message, whose length
				// prefix may be the same byte as a one-byte rest.)
				got, err = scrubbedGRPC(t, s, ct, first, f[k:]+" more")
				if strings.Contains(strings.TrimPrefix(got, whole), f[k:]) || !errors.Is(err, ErrGRPCFraming) {
					t.Errorf("%s: %q then the rest of the form unframed: passed %q (%v), want the body cut before the rest", ct, f[:k], got, err)
				}
				// Then a proper message: passes, scrubbed.
				got, err = scrubbedGRPC(t, s, ct, first, grpcMessage(v))
				if want := whole + grpcMessage(sameLength(secret.Redacted, len(v))); got != want || !errors.Is(err, errPaused) {
					t.Errorf("%s: %q then a message holding the secret: passed %q (%v), want %q", ct, f[:k], got, err, want)
				}
			}
			for _, ct := range held {
				got, err := scrubbedGRPC(t, s, ct, first)
				if got == whole || !errors.Is(err, errPaused) {
					t.Errorf("%q, message ending in %q: passed %q (%v) before the pause, want the beginning of the form held back", ct, f[:k], got, err)
				}
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d gRPC messages held back", failed, cases)
	}

	// A secret with a byte that can begin a message prefix (0x01) after
	// its first: a message ending in its beginning is held back.
	odd := "gw-s3cr3t\x01value-0123456789"
	so := NewScrubber([]secret.Value{secret.New(odd)}, ScrubOptions{KeepLength: true})
	first := grpcMessage("hello gw-s3")
	if got, _ := scrubbedGRPC(t, so, "application/grpc", first); got == first {
		t.Errorf("a secret holding 0x01: the message's end %q passed, want it held back", "gw-s3")
	}
}

// gzipped returns p compressed with gzip, as a gRPC message compressed
// under grpc-encoding: gzip carries it.
func gzipped(t *testing.T, p string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, p); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestGRPCCompressedNotPassed is the class of "a gRPC message the
// scrubber cannot read is passed on": a message whose flags byte says it
// is compressed (grpc-encoding gzip; 0x01, and 0x81 for a gRPC-Web
// trailer frame) holding the secret, after an uncompressed one, its
// prefix split at every offset between reads. The scrubber cannot look
// inside it, so it is not passed on: the message before it is, and the
// body ends there with ErrGRPCCompressed, as a body in a Content-Encoding the scrubber cannot
// decode is refused. Before, it passed, and the client decompressed the
// secret.
func TestGRPCCompressedNotPassed(t *testing.T) {
	const v = "gw-s3cr3t-value-0123456789"
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	z := gzipped(t, `{"echo":"`+v+`"}`)
	clean := grpcMessage("hello")
	var failed, cases int
	for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/grpc-web"} {
		for _, flag := range []byte{0x01, 0x81} {
			msg := []byte(grpcMessage(z))
			msg[0] = flag
			body := clean + string(msg)
			for cut := 1; cut < len(clean)+6; cut++ {
				cases++
				got, err := scrubbedGRPC(t, s, ct, body[:cut], body[cut:])
				if got != clean || !errors.Is(err, ErrGRPCCompressed) {
					failed++
					if failed < 5 {
						t.Errorf("%s, flags %#x, cut at %d: passed %q (%v); want the message before it, the compressed message kept back, and ErrGRPCCompressed", ct, flag, cut, got, err)
					}
				}
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d compressed messages passed", failed, cases)
	}
	// Not gRPC: the same bytes are a body like any other.
	body := clean + grpcMessage(z)
	if got, err := scrubbedGRPC(t, s, "application/octet-stream", body); got != body || !errors.Is(err, errPaused) {
		t.Errorf("application/octet-stream: passed %q (%v), want it whole", got, err)
	}

	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"gzip"}, []string{"identity"}},
		{[]string{"gzip, deflate", "snappy"}, []string{"identity"}},
		{[]string{"identity"}, []string{"identity"}},
	} {
		h := http.Header{}
		if tc.in != nil {
			h["Grpc-Accept-Encoding"] = tc.in
		}
		PrepareGRPCRequest(h)
		if got := h["Grpc-Accept-Encoding"]; !slices.Equal(got, tc.want) {
			t.Errorf("PrepareGRPCRequest(%q): %q, want %q", tc.in, got, tc.want)
		}
	}
}

// grpcFramedByParse is grpcFramed without its prefilter: what it answered
// before maybeGRPC.
func grpcFramedByParse(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+") ||
		mt == "application/grpc-web" || strings.HasPrefix(mt, "application/grpc-web+")
}

// grpcTypeSpellings are Content-Type values around the gRPC types: case,
// white space of every kind, parameters, near misses and Unicode letters
// that lower-case to ASCII ones.
var grpcTypeSpellings = []string{
	"", "application/grpc", "application/grpc+proto", "application/grpc-web",
	"application/grpc-web+proto", "application/grpc-web-text", "application/grpc-web-text+proto",
	"Application/GRPC", "APPLICATION/GRPC+JSON", " application/grpc", "\tapplication/grpc ;",
	"\napplication/grpc", "\v\f\rapplication/grpc", "\u0085application/grpc", "\u00a0application/grpc",
	"application/grpc; charset=utf-8", "application/grpc;", "application/grpc; bad", "application/grpc;a=\"b",
	"application/grpcx", "application/grp", "application/json", "text/event-stream",
	"appl\u0130cation/grpc", "application/grpc\u212a", "\u017fpplication/grpc", "application /grpc",
	"application/grpc+", "application/grpc++", "application/grpc-web+", "application/grpc-web;x=1",
	";application/grpc", "application/grpc\x00", "\x00application/grpc",
}

// TestGRPCFramedAgreesWithParse is the class of "the prefilter in front of
// mime.ParseMediaType changes what is taken for gRPC": for every spelling
// it answers as the parse alone did.
func TestGRPCFramedAgreesWithParse(t *testing.T) {
	for _, ct := range grpcTypeSpellings {
		h := http.Header{"Content-Type": {ct}}
		if got, want := grpcFramed(h), grpcFramedByParse(ct); got != want {
			t.Errorf("grpcFramed(%q) = %v, the parse alone says %v", ct, got, want)
		}
	}
}

// FuzzGRPCFramed is TestGRPCFramedAgreesWithParse over any value.
func FuzzGRPCFramed(f *testing.F) {
	for _, ct := range grpcTypeSpellings {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		if got, want := grpcFramed(http.Header{"Content-Type": {ct}}), grpcFramedByParse(ct); got != want {
			t.Errorf("grpcFramed(%q) = %v, the parse alone says %v", ct, got, want)
		}
	})
}

// BenchmarkGRPCFramed is the question every scrubbed response asks, for
// the common JSON answer.
func BenchmarkGRPCFramed(b *testing.B) {
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	b.ReportAllocs()
	for b.Loop() {
		if grpcFramed(h) {
			b.Fatal("JSON taken for gRPC")
		}
	}
}
