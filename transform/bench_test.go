package transform

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/credgate/credgate/secret"
)

const mib = 1 << 20

// jsonBody is about 1 MiB of JSON records, one in every 64 carrying the
// placeholder.
func jsonBody(withPh string) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < mib; i++ {
		tok := "tok_" + fmt.Sprint(i)
		if i%64 == 0 {
			tok = withPh
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"customer %d","email":"c%d@example.com","token":"%s","note":"lorem ipsum dolor sit amet"},`, i, i, i, tok)
	}
	b.WriteString("{}]")
	return b.Bytes()
}

// drain copies r to nowhere through a 32 KiB buffer, as a proxy copies a
// body: the same copy for the plain and the transformed body (no
// WriterTo/ReaderFrom shortcut that would skip the copy of the plain one).
func drain(b *testing.B, r io.Reader, buf []byte) {
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, buf); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRequestJSON compares a 1 MiB JSON request body sent as is with
// the same body through TransformRequest (streamed: it is over
// MaxBuffered).
func BenchmarkRequestJSON(b *testing.B) {
	body := jsonBody(ph)
	s := substituter(b, Options{})
	buf := make([]byte, 32<<10)
	run := func(b *testing.B, transform bool) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r, _ := http.NewRequest("POST", "https://api.example.com/v1", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			if transform {
				if _, err := s.TransformRequest(r); err != nil {
					b.Fatal(err)
				}
			}
			drain(b, r.Body, buf)
		}
	}
	b.Run("copy", func(b *testing.B) { run(b, false) })
	b.Run("substitute", func(b *testing.B) { run(b, true) })
}

// BenchmarkScrub compares copying a 1 MiB response body with scrubbing it
// of one secret (20 forms), with and without echoes in it, and through gzip.
func BenchmarkScrub(b *testing.B) {
	clean := jsonBody("tok_none")
	echo := bytes.ReplaceAll(jsonBody("ECHO"), []byte("ECHO"), []byte(testSecret))
	s := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{})
	gz := compress(b, "gzip", echo)
	buf := make([]byte, 32<<10)
	for _, tc := range []struct {
		name     string
		body     []byte
		scrub    bool
		encoding string
	}{
		{"copy", clean, false, ""},
		{"scrub/clean", clean, true, ""},
		{"scrub/echoes", echo, true, ""},
		{"gzip/decode-only", gz, false, "gzip"},
		{"gzip/scrub", gz, true, "gzip"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(clean)))
			b.ReportAllocs()
			for b.Loop() {
				resp := &http.Response{Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(tc.body))}
				if tc.encoding != "" {
					resp.Header.Set("Content-Encoding", tc.encoding)
				}
				if tc.scrub {
					if _, err := s.TransformResponse(resp); err != nil {
						b.Fatal(err)
					}
				} else if tc.encoding != "" {
					body, err := decode(resp.Body, []string{tc.encoding})
					if err != nil {
						b.Fatal(err)
					}
					resp.Body = body
				}
				drain(b, resp.Body, buf)
			}
		})
	}
}

// BenchmarkScrubSmall is what the gateway does to a typical API answer:
// a 100-byte JSON body with a Content-Length, scrubbed of one secret with
// KeepLength (the gateway's setting), read through a 32 KiB copy buffer.
// Its B/op is mostly the scrubber's per-response buffer.
func BenchmarkScrubSmall(b *testing.B) {
	body := []byte(`{"id":"ch_3PqXkY2eZvKYlo2C1xZ0","object":"charge","amount":2000,"currency":"usd","status":"succeeded"}`)
	s := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{KeepLength: true})
	buf := make([]byte, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		resp := &http.Response{Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
		if _, err := s.TransformResponse(resp); err != nil {
			b.Fatal(err)
		}
		drain(b, resp.Body, buf)
	}
}

// BenchmarkScrubBinary compares copying 8 MiB of random bytes (what an
// archive or an image is to the scanner, and what the bench's 1 GiB
// download sends) with scrubbing them of one secret (14 forms) with
// KeepLength, as the gateway does.
func BenchmarkScrubBinary(b *testing.B) {
	body := make([]byte, 8*mib)
	for i, x := 0, uint32(1); i < len(body); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		body[i] = byte(x >> 7)
	}
	s := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{KeepLength: true})
	buf := make([]byte, 32<<10)
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			drain(b, io.NopCloser(bytes.NewReader(body)), buf)
		}
	})
	b.Run("scrub", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			resp := &http.Response{Header: http.Header{}, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
			if _, err := s.TransformResponse(resp); err != nil {
				b.Fatal(err)
			}
			drain(b, resp.Body, buf)
		}
	})
	// As the gateway's copyBody hands the body on: through ReadChunk,
	// which writes a stretch with no match from the scrubber's buffer
	// instead of copying it into buf first.
	b.Run("scrub-chunks", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			resp := &http.Response{Header: http.Header{}, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
			if _, err := s.TransformResponse(resp); err != nil {
				b.Fatal(err)
			}
			cr := resp.Body.(interface {
				ReadChunk(p []byte) ([]byte, error)
			})
			for {
				p, err := cr.ReadChunk(buf)
				_, _ = io.Discard.Write(p)
				if err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkScrubHTTP is closer to the figure the gateway sees: a 1 MiB
// response fetched over loopback HTTP (and HTTPS, as the gateway's
// upstream leg is) and read by the client, with and without scrubbing
// (one secret, echoed in it every 64 records).
func BenchmarkScrubHTTP(b *testing.B) {
	body := bytes.ReplaceAll(jsonBody("ECHO"), []byte("ECHO"), []byte(testSecret))
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(body)
	})
	s := NewScrubber([]secret.Value{secret.New(testSecret)}, ScrubOptions{})
	buf := make([]byte, 32<<10)
	for _, tlsOn := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(handler)
		proto := "http"
		if tlsOn {
			srv.StartTLS()
			proto = "https"
		} else {
			srv.Start()
		}
		client := srv.Client()
		for _, scrub := range []bool{false, true} {
			name := proto + "/plain"
			if scrub {
				name = proto + "/scrub"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					resp, err := client.Get(srv.URL)
					if err != nil {
						b.Fatal(err)
					}
					if scrub {
						if _, err := s.TransformResponse(resp); err != nil {
							b.Fatal(err)
						}
					}
					drain(b, resp.Body, buf)
					_ = resp.Body.Close()
				}
			})
		}
		srv.Close()
	}
}

// BenchmarkMatcherSearch compares the prefiltered search (first) with
// Wu-Manber alone (scan) over the 1 MiB JSON body, for the needles of a
// substitution (a placeholder and the policy's other placeholders as
// tripwires) and of a scrub (the 20 forms of one secret), and for a text
// full of one needle's bytes (where the prefilter gives up).
func BenchmarkMatcherSearch(b *testing.B) {
	phs := []needle{
		{find: []byte(ph), repl: []byte("v")},
		{find: []byte("CREDGATE_PH_elsewhere"), act: trip},
		{find: []byte("CREDGATE_PH_dots"), act: trip},
		{find: []byte("cgph_3vq7zl2c5m4ybxk6o1rfhdws0a"), act: trip},
	}
	var fs []needle
	for _, f := range forms(testSecret, DefaultMinLength) {
		fs = append(fs, needle{find: []byte(f), repl: []byte("*")})
	}
	body := jsonBody(ph)
	echo := bytes.ReplaceAll(jsonBody("ECHO"), []byte("ECHO"), []byte(testSecret))
	hostile := bytes.Repeat([]byte("CREDGATE_PX_"), mib/12)
	// A binary body (an archive, an image: what a large download usually
	// is) searched for the forms of a hex token, as the bench's bigbody
	// download is: every byte value is as frequent as any other.
	var hexForms []needle
	for _, f := range forms("3f9a0c27e1b84d56a7c2e90f1b3d5a7c9e2f4a6b8d0c1e3f", DefaultMinLength) {
		hexForms = append(hexForms, needle{find: []byte(f), repl: []byte("*")})
	}
	binary := make([]byte, mib)
	for i, x := 0, uint32(1); i < len(binary); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary[i] = byte(x >> 7)
	}
	for _, tc := range []struct {
		name    string
		needles []needle
		text    []byte
	}{
		{"placeholders", phs, body},
		{"forms", fs, echo},
		{"placeholders-hostile", phs, hostile},
		{"forms-binary", hexForms, binary},
	} {
		m := newMatcher(tc.needles)
		for _, variant := range []string{"first", "scan"} {
			search := m.first
			if variant == "scan" {
				search = m.scan
			}
			b.Run(tc.name+"/"+variant, func(b *testing.B) {
				b.SetBytes(int64(len(tc.text)))
				for b.Loop() {
					for rest := tc.text; ; {
						at, w := search(rest)
						if at < 0 {
							break
						}
						rest = rest[at+len(m.needles[w].find):]
					}
				}
			})
			if tc.name == "forms-binary" {
				// As a stream searches a body that comes in TLS
				// records: 16 KiB at a time.
				b.Run(tc.name+"-16k/"+variant, func(b *testing.B) {
					b.SetBytes(int64(len(tc.text)))
					for b.Loop() {
						for i := 0; i < len(tc.text); i += 16 << 10 {
							if at, _ := search(tc.text[i:min(len(tc.text), i+16<<10)]); at >= 0 {
								b.Fatal("a match in random bytes")
							}
						}
					}
				})
			}
		}
	}
}
