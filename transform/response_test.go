package transform

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/credgate/credgate/secret"
)

// testSecret has bytes every encoding rewrites.
const testSecret = `sk_live/Ab+c=d"e<f>&g h%z`

func scrubber(t testing.TB) *Scrubber {
	t.Helper()
	return NewScrubber([]secret.Value{secret.New(testSecret), {}}, ScrubOptions{})
}

// echoes returns each form in which an upstream may echo testSecret.
func echoes() map[string]string {
	b64 := func(e *base64.Encoding, s string) string { return e.EncodeToString([]byte(s)) }
	return map[string]string{
		"raw":             testSecret,
		"base64":          b64(base64.StdEncoding, testSecret),
		"base64 raw":      b64(base64.RawStdEncoding, testSecret),
		"base64url":       b64(base64.URLEncoding, testSecret),
		"base64url raw":   b64(base64.RawURLEncoding, testSecret),
		"basic user:":     b64(base64.StdEncoding, "user:"+testSecret),
		"basic ab:":       b64(base64.StdEncoding, "ab:"+testSecret),
		"basic a:":        b64(base64.StdEncoding, "a:"+testSecret),
		"query escape":    url.QueryEscape(testSecret),
		"query lower hex": lowerHex(url.QueryEscape(testSecret)),
		"path escape":     url.PathEscape(testSecret),
		"path lower hex":  lowerHex(url.PathEscape(testSecret)),
		"json":            `sk_live/Ab+c=d\"e\u003cf\u003e\u0026g h%z`,
		"json no html":    `sk_live/Ab+c=d\"e<f>&g h%z`,
		"json slash":      `sk_live\/Ab+c=d\"e<f>&g h%z`,
	}
}

// leaks reports whether out still holds the secret or the part of an
// encoded form that depends on it alone.
func leaks(out string) bool {
	for _, f := range forms(testSecret, DefaultMinLength) {
		if strings.Contains(out, f) {
			return true
		}
	}
	return false
}

func TestScrubBodyForms(t *testing.T) {
	s := scrubber(t)
	for name, form := range echoes() {
		t.Run(name, func(t *testing.T) {
			in := `{"echo":"` + form + `","other":"keep me"}`
			var c ScrubCount
			got, err := io.ReadAll(s.Reader(strings.NewReader(in), &c))
			if err != nil {
				t.Fatal(err)
			}
			if leaks(string(got)) || strings.Contains(string(got), testSecret) {
				t.Errorf("leaked: %s", got)
			}
			if !strings.Contains(string(got), secret.Redacted) || !strings.HasSuffix(string(got), `","other":"keep me"}`) {
				t.Errorf("got %s", got)
			}
			if c.Count() != 1 {
				t.Errorf("count %d, want 1", c.Count())
			}
			// Split in two reads at every offset.
			for i := 0; i <= len(in); i++ {
				split, err := io.ReadAll(s.Reader(io.MultiReader(strings.NewReader(in[:i]), strings.NewReader(in[i:])), &ScrubCount{}))
				if err != nil || string(split) != string(got) {
					t.Fatalf("split at %d: %q, %v; want %q", i, split, err, got)
				}
			}
		})
	}
}

func TestScrubHeaderAndMarker(t *testing.T) {
	s := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{Marker: "***"})
	h := http.Header{
		"X-Echo":     {"Bearer " + testSecret, "plain"},
		"Set-Cookie": {"t=" + url.QueryEscape(testSecret) + "; Path=/"},
	}
	if n := s.Header(h); n != 2 {
		t.Errorf("Header redacted %d, want 2", n)
	}
	want := http.Header{"X-Echo": {"Bearer ***", "plain"}, "Set-Cookie": {"t=***; Path=/"}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("header = %v, want %v", h, want)
	}
}

func TestScrubShortSecretSkipped(t *testing.T) {
	s := NewScrubber([]secret.Value{secret.New("abc")}, ScrubOptions{})
	got, _ := io.ReadAll(s.Reader(strings.NewReader("abc abc"), &ScrubCount{}))
	if string(got) != "abc abc" {
		t.Errorf("a secret shorter than MinLength was scrubbed: %q", got)
	}
}

func compress(t testing.TB, coding string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "raw-deflate":
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&b)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTransformResponseEncodings(t *testing.T) {
	s := scrubber(t)
	plain := []byte(strings.Repeat("filler ", 10000) + testSecret + " and " + base64.StdEncoding.EncodeToString([]byte(testSecret)) + strings.Repeat(" tail", 5000))
	for _, tc := range []struct{ header, coding string }{
		{"", ""},
		{"identity", ""},
		{"gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"deflate", "deflate"},
		{"deflate", "raw-deflate"},
		{"br", "br"},
		{"BR", "br"},
	} {
		t.Run(tc.header+"/"+tc.coding, func(t *testing.T) {
			body := plain
			if tc.coding != "" {
				body = compress(t, tc.coding, plain)
			}
			resp := &http.Response{
				Header:        http.Header{"Content-Length": {fmt.Sprint(len(body))}, "X-Echo": {testSecret}},
				ContentLength: int64(len(body)),
				Body:          io.NopCloser(bytes.NewReader(body)),
				Trailer:       http.Header{"X-Trailer-Echo": {testSecret}},
			}
			if tc.header != "" {
				resp.Header.Set("Content-Encoding", tc.header)
			}
			c, err := s.TransformResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Trailer.Get("X-Trailer-Echo") != testSecret {
				t.Error("trailer scrubbed before the body ended (it is not known then)")
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if err := resp.Body.Close(); err != nil {
				t.Fatal(err)
			}
			want := strings.Repeat("filler ", 10000) + secret.Redacted + " and " + secret.Redacted + strings.Repeat(" tail", 5000)
			if string(got) != want {
				t.Errorf("body differs from the scrubbed plain text (len %d, want %d)", len(got), len(want))
			}
			if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != "" || resp.ContentLength != -1 {
				t.Errorf("headers after: %v, ContentLength %d", resp.Header, resp.ContentLength)
			}
			if resp.Header.Get("X-Echo") != secret.Redacted || resp.Trailer.Get("X-Trailer-Echo") != secret.Redacted {
				t.Errorf("header %q trailer %q", resp.Header.Get("X-Echo"), resp.Trailer.Get("X-Trailer-Echo"))
			}
			if c.Count() != 4 {
				t.Errorf("count %d, want 4", c.Count())
			}
		})
	}
}

func TestTransformResponseUnsupported(t *testing.T) {
	s := scrubber(t)
	for _, ce := range []string{"zstd", "gzip, compress"} {
		resp := &http.Response{Header: http.Header{"Content-Encoding": {ce}}, Body: io.NopCloser(strings.NewReader("x"))}
		body := resp.Body
		if _, err := s.TransformResponse(resp); !errors.Is(err, ErrUnsupportedEncoding) {
			t.Errorf("%s: err = %v, want ErrUnsupportedEncoding", ce, err)
		}
		if resp.Body != body {
			t.Errorf("%s: body replaced on error", ce)
		}
	}
	resp := &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}, Body: io.NopCloser(strings.NewReader("not gzip"))}
	if _, err := s.TransformResponse(resp); err == nil || strings.Contains(err.Error(), testSecret) {
		t.Errorf("bad gzip: err = %v", err)
	}
}

func TestPrepareRequest(t *testing.T) {
	for _, tc := range []struct {
		identity bool
		want     string
	}{{false, "gzip, deflate, br"}, {true, "identity"}} {
		r, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		r.Header.Set("Accept-Encoding", "zstd")
		NewScrubber(nil, ScrubOptions{IdentityEncoding: tc.identity}).PrepareRequest(r)
		if got := r.Header.Get("Accept-Encoding"); got != tc.want {
			t.Errorf("identity=%v: Accept-Encoding %q, want %q", tc.identity, got, tc.want)
		}
	}
}

// FuzzScrubSplit puts the secret, in each form, between fuzzed bytes and
// reads the result back through reads split at fuzzed sizes: the client
// sees no form of the secret, and bytes that are not secrets pass
// unchanged.
func FuzzScrubSplit(f *testing.F) {
	f.Add([]byte("prefix "), []byte(" suffix"), uint8(0), []byte{1})
	f.Add([]byte{}, []byte{}, uint8(3), []byte{7, 1, 2})
	f.Add([]byte("sk_live"), []byte("sk_live/A"), uint8(9), []byte{5, 0, 13})
	s := scrubber(f)
	all := echoes()
	var names []string
	for n := range all {
		names = append(names, n)
	}
	f.Fuzz(func(t *testing.T, pre, post []byte, which uint8, sizes []byte) {
		// Keep the fuzzed bytes free of the secret's forms themselves so
		// the expected output is known.
		if leaks(string(pre)) || leaks(string(post)) {
			return
		}
		form := all[names[int(which)%len(names)]]
		in := string(pre) + form + string(post)
		var sz []int
		for _, b := range sizes {
			sz = append(sz, int(b))
		}
		var c ScrubCount
		got, err := io.ReadAll(s.Reader(&splitReader{data: []byte(in), sizes: sz}, &c))
		if err != nil {
			t.Fatal(err)
		}
		if leaks(string(got)) {
			t.Fatalf("leaked through reads %v: %q", sz, got)
		}
		whole, n := s.Bytes([]byte(in))
		if string(got) != string(whole) || c.Count() != int64(n) {
			t.Fatalf("stream %q (%d) != whole %q (%d)", got, c.Count(), whole, n)
		}
		// Bytes with no secret at all pass unchanged.
		plain := append(append([]byte{}, pre...), post...)
		if leaks(string(plain)) {
			return
		}
		if out, _ := io.ReadAll(s.Reader(&splitReader{data: plain, sizes: sz}, &ScrubCount{})); !bytes.Equal(out, plain) {
			t.Fatalf("non-secret bytes changed: %q -> %q", plain, out)
		}
	})
}

// TestScrubOverHTTP runs a real upstream on 127.0.0.1 that echoes the
// secret in a header, an encoded body and a trailer.
func TestScrubOverHTTP(t *testing.T) {
	plain := []byte(strings.Repeat("x", 70000) + testSecret + strings.Repeat("y", 10))
	for _, coding := range []string{"gzip", "br", "deflate", ""} {
		t.Run(coding, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Accept-Encoding"); got != "gzip, deflate, br" {
					t.Errorf("upstream saw Accept-Encoding %q", got)
				}
				w.Header().Set("Trailer", "X-Echo-Trailer")
				w.Header().Set("X-Echo", testSecret)
				body := plain
				if coding != "" {
					w.Header().Set("Content-Encoding", coding)
					body = compress(t, coding, plain)
				}
				_, _ = w.Write(body)
				w.Header().Set("X-Echo-Trailer", url.QueryEscape(testSecret))
			}))
			defer srv.Close()
			s := scrubber(t)
			r, _ := http.NewRequest("GET", srv.URL, nil)
			s.PrepareRequest(r)
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			c, err := s.TransformResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Repeat("x", 70000) + secret.Redacted + strings.Repeat("y", 10); string(got) != want {
				t.Errorf("body differs (len %d, want %d)", len(got), len(want))
			}
			if resp.Header.Get("X-Echo") != secret.Redacted || resp.Trailer.Get("X-Echo-Trailer") != secret.Redacted {
				t.Errorf("header %q trailer %q", resp.Header.Get("X-Echo"), resp.Trailer.Get("X-Echo-Trailer"))
			}
			if c.Count() != 3 {
				t.Errorf("count %d, want 3", c.Count())
			}
		})
	}
}

// TestStackedCodingsBounded: a response whose Content-Encoding stacks
// codings is decoded up to MaxStackedCodings deep, whatever the codings
// (each decoder costs tens of KiB before a byte is read: a hostile
// upstream's "deflate, deflate, ..." of 10,000 codings in 80 KB of
// header made the gateway allocate over 400 MB for one response); one
// more, of any supported coding and mixed with identity, is
// ErrUnsupportedEncoding before any decoder is built, through
// TransformResponse and DecodeResponse alike.
func TestStackedCodingsBounded(t *testing.T) {
	s := scrubber(t)
	plain := []byte("hello " + testSecret)
	for _, coding := range []string{"gzip", "deflate", "raw-deflate", "br"} {
		name := coding
		if coding == "raw-deflate" {
			name = "deflate"
		}
		for depth := 1; depth <= MaxStackedCodings+1; depth++ {
			body := plain
			var names []string
			for range depth {
				body = compress(t, coding, body)
				names = append(names, name, "identity")
			}
			ce := strings.Join(names, ", ")
			for _, via := range []string{"TransformResponse", "DecodeResponse"} {
				resp := &http.Response{Header: http.Header{"Content-Encoding": {ce}}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
				var err error
				if via == "TransformResponse" {
					_, err = s.TransformResponse(resp)
				} else {
					err = DecodeResponse(resp)
				}
				if coding == "br" && depth > 1 && depth <= MaxStackedCodings {
					// One brotli decoder per response: each may cost
					// its window (TestBrotliWindowBounded).
					if !errors.Is(err, ErrUnsupportedEncoding) || !strings.Contains(err.Error(), "more than once") {
						t.Errorf("%s %d x br: err = %v, want ErrUnsupportedEncoding naming brotli applied more than once", via, depth, err)
					}
					continue
				}
				if depth > MaxStackedCodings {
					if !errors.Is(err, ErrUnsupportedEncoding) || !strings.Contains(err.Error(), "stacked") {
						t.Errorf("%s %d x %s: err = %v, want ErrUnsupportedEncoding naming the stacked codings", via, depth, coding, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s %d x %s: %v", via, depth, coding, err)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("%s %d x %s: read: %v", via, depth, coding, err)
				}
				want := string(plain)
				if via == "TransformResponse" {
					want = "hello " + secret.Redacted
				}
				if string(got) != want {
					t.Errorf("%s %d x %s: body %q, want %q", via, depth, coding, got, want)
				}
			}
		}
	}
	// A bomb of codings: refused with next to no allocation.
	bomb := strings.TrimSuffix(strings.Repeat("deflate,", 10000), ",")
	allocs := testing.AllocsPerRun(3, func() {
		resp := &http.Response{Header: http.Header{"Content-Encoding": {bomb}}, Body: io.NopCloser(strings.NewReader("x")), ContentLength: -1}
		if _, err := s.TransformResponse(resp); !errors.Is(err, ErrUnsupportedEncoding) {
			t.Fatalf("10000 stacked codings: err = %v, want ErrUnsupportedEncoding", err)
		}
	})
	if allocs > 20 {
		t.Errorf("10000 stacked codings: %v allocations, want a handful (no decoder built)", allocs)
	}
}

// arrivalBody is a raw response body that says whether its rest has
// arrived.
type arrivalBody struct {
	io.Reader
	arrived bool
}

func (b *arrivalBody) Close() error  { return nil }
func (b *arrivalBody) Arrived() bool { return b.arrived }

// TestScrubbedBodyArrival: every body TransformResponse makes (the
// Scrubber's, keeping the length or not, over an encoded body or not, and
// a Table's) reports the arrival of the raw body under it, since it
// reads nothing else; a raw body that cannot tell makes one that cannot
// either.
func TestScrubbedBodyArrival(t *testing.T) {
	keep := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{KeepLength: true})
	table, err := NewTable(keep)
	if err != nil {
		t.Fatal(err)
	}
	wrap := map[string]func(*http.Response) error{
		"scrubber":         func(r *http.Response) error { _, err := scrubber(t).TransformResponse(r); return err },
		"scrubber, length": func(r *http.Response) error { _, err := keep.TransformResponse(r); return err },
		"table":            func(r *http.Response) error { _, err := table.TransformResponse(r, nil); return err },
	}
	plain := `{"echo":"` + testSecret + `"}`
	for name, transform := range wrap {
		for _, encoding := range []string{"", "gzip"} {
			for _, raw := range []io.Reader{&arrivalBody{arrived: true}, &arrivalBody{}, nil} {
				data := plain
				if encoding != "" {
					data = string(compress(t, encoding, []byte(plain)))
				}
				var body io.ReadCloser = io.NopCloser(strings.NewReader(data))
				want := false
				if a, ok := raw.(*arrivalBody); ok {
					a.Reader, want, body = strings.NewReader(data), a.arrived, a
				}
				resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: body, ContentLength: int64(len(data))}
				if encoding != "" {
					resp.Header.Set("Content-Encoding", encoding)
				}
				if err := transform(resp); err != nil {
					t.Fatal(err)
				}
				if resp.Body == body {
					t.Fatalf("%s %q: body not transformed", name, encoding)
				}
				if got := ArrivedWhole(resp.Body); got != want {
					t.Errorf("%s %q, raw arrived %v: scrubbed body Arrived %v", name, encoding, want, got)
				}
			}
		}
	}
}

// TestBrotliWindowBounded: a brotli body is decoded only when the window
// its first byte declares is at most MaxBrotliWindowBits, through
// TransformResponse and DecodeResponse alike; a larger one (RFC 7932
// allows 16 MiB) is ErrUnsupportedEncoding naming the window, before a
// decoder is built. The body is twice the window of zeros, so that the
// decoder's ring buffer grows to the window: what an accepted stream
// costs is bounded by its window, and a refused one costs next to
// nothing. Before, 418 bytes of brotli with a 16 MiB window (32 MiB of
// zeros) made the decoder allocate 31 MiB. Every WBITS the encoder can
// write (10 to 24) is parsed as the encoder wrote it.
func TestBrotliWindowBounded(t *testing.T) {
	s := scrubber(t)
	for bits := 10; bits <= 24; bits++ {
		var b bytes.Buffer
		w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 5, LGWin: bits})
		zeros := make([]byte, min(64<<10, 2<<bits))
		for range 2 << bits / len(zeros) {
			if _, err := w.Write(zeros); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		body := b.Bytes()
		if got := brotliWindowBits(body[0]); got != bits {
			t.Fatalf("WBITS %d: the first byte %#x parsed as %d", bits, body[0], got)
		}
		for _, via := range []string{"TransformResponse", "DecodeResponse"} {
			resp := &http.Response{Header: http.Header{"Content-Encoding": {"br"}}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var err error
			n := int64(0)
			if via == "TransformResponse" {
				_, err = s.TransformResponse(resp)
			} else {
				err = DecodeResponse(resp)
			}
			if err == nil {
				n, err = io.Copy(io.Discard, resp.Body)
			}
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			// Whatever the stream declares, one response's decoder
			// costs at most 10 MiB (a 4 MiB window).
			if ceiling := uint64(10 << 20); alloc > ceiling {
				t.Errorf("%s, WBITS %d: %d bytes allocated, over the ceiling of %d", via, bits, alloc, ceiling)
			}
			if bits > MaxBrotliWindowBits {
				if !errors.Is(err, ErrUnsupportedEncoding) || !strings.Contains(err.Error(), "window") {
					t.Errorf("%s, WBITS %d: err = %v, want ErrUnsupportedEncoding naming the window", via, bits, err)
				}
				if alloc > 1<<20 {
					t.Errorf("%s, WBITS %d: %d bytes allocated to refuse it", via, bits, alloc)
				}
				continue
			}
			if err != nil || n != 2<<bits {
				t.Errorf("%s, WBITS %d: %d bytes decoded, %v; want %d", via, bits, n, err, 2<<bits)
			}
			// The ring buffer doubles up to the window; the rest is
			// the decoder's tables and buffers.
			if bound := uint64(2<<bits + 2<<20); alloc > bound {
				t.Errorf("%s, WBITS %d: %d bytes allocated, want at most %d", via, bits, alloc, bound)
			}
		}
	}
}
