package transform

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/andybalholm/brotli"
	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/secret"
)

// DefaultMinLength is the shortest form of a secret a Scrubber redacts
// unless ScrubOptions.MinLength says otherwise.
const DefaultMinLength = 8

// ErrUnsupportedEncoding is returned for a response whose Content-Encoding
// the scrubber cannot decode; the gateway answers 502 rather than pass a
// body it could not scrub (fail closed).
var ErrUnsupportedEncoding = errors.New("transform: response content encoding cannot be scrubbed")

// ScrubOptions configure a Scrubber. The zero value is usable.
type ScrubOptions struct {
	// Marker replaces every occurrence; "" means secret.Redacted.
	Marker string
	// MinLength is the shortest form redacted (0 means DefaultMinLength):
	// shorter strings would redact unrelated bytes, so a secret shorter
	// than this is not scrubbed at all, and its encoded forms only when
	// they reach it.
	MinLength int
	// KeepLength replaces each occurrence by the marker padded with '*'
	// to the occurrence's length (or by as many '*' when the occurrence
	// is shorter than the marker), so a body's length does not change:
	// TransformResponse then keeps an unencoded body's Content-Length,
	// and the response is framed as the upstream framed it (no chunked
	// re-encoding, which costs more than the scan).
	KeepLength bool
	// IdentityEncoding makes PrepareRequest ask upstream for an unencoded
	// response (Accept-Encoding: identity) instead of advertising the
	// encodings the scrubber decodes. A response encoded anyway is still
	// decoded when it can be, or refused.
	IdentityEncoding bool
}

// Scrubber replaces injected secret values echoed by an upstream in the
// response headers, body and trailers. Build one per request from the
// secrets injected into it; it is immutable and safe for concurrent use.
type Scrubber struct {
	m *matcher
	// names finds m's forms in a field name, whatever its case
	// (nameHolds); built on first use.
	names    *nameIndex
	identity bool
	keepLen  bool
	marker   string
	minLen   int
}

// NewScrubber returns a Scrubber for values and each of their encoded
// forms (see ScrubOptions.MinLength). Zero values are ignored.
func NewScrubber(values []secret.Value, opts ScrubOptions) *Scrubber {
	marker := opts.Marker
	if marker == "" {
		marker = secret.Redacted
	}
	minLen := opts.MinLength
	if minLen <= 0 {
		minLen = DefaultMinLength
	}
	var ns []needle
	for i, v := range values {
		if v.IsZero() {
			continue
		}
		for _, f := range forms(v.Reveal(), minLen) {
			repl := marker
			if opts.KeepLength {
				repl = sameLength(marker, len(f))
			}
			ns = append(ns, needle{find: []byte(f), repl: []byte(repl), act: replace, id: i})
		}
	}
	return &Scrubber{m: newMatcher(ns), names: &nameIndex{}, identity: opts.IdentityEncoding, keepLen: opts.KeepLength, marker: marker, minLen: minLen}
}

// Combine returns one Scrubber for the secrets of every one of ss (nil
// ones skipped): a response scrubbed by it is scrubbed of each, in one
// pass. Its options (marker, lengths, encodings asked for) are those of
// the first; with none it redacts nothing.
func Combine(ss ...*Scrubber) *Scrubber {
	var ns []needle
	var first *Scrubber
	for _, s := range ss {
		if s == nil {
			continue
		}
		if first == nil {
			first = s
		}
		ns = append(ns, s.m.needles...)
	}
	if first == nil {
		return &Scrubber{m: newMatcher(nil), names: &nameIndex{}, marker: secret.Redacted, minLen: DefaultMinLength}
	}
	c := *first
	c.m, c.names = newMatcher(ns), &nameIndex{}
	return &c
}

// Layer returns a Scrubber for the secrets of ss (nil ones skipped), to
// run on what base left of a text: base first, then it. Besides every
// form of their secrets it finds each form as base rewrote it (a form
// that holds a form of one of base's secrets, redacted by base first),
// so the two together redact what Combine(base, ss...) redacts, without
// building base's table again: its cost is that of ss's forms, whatever
// the size of base. Its options are base's, or, when base redacts
// nothing (Combine of none: it has no options of its own), those of the
// first of ss, as Combine's: a layer of KeepLength Scrubbers on an empty
// base keeps lengths, so that a Table can hold it (TestLayerOptions).
func Layer(base *Scrubber, ss ...*Scrubber) *Scrubber {
	var ns []needle
	opts := base
	for _, s := range ss {
		if s == nil {
			continue
		}
		if opts == base && base.m.empty() {
			opts = s
		}
		for _, n := range s.m.needles {
			ns = append(ns, n)
			if base.m.empty() {
				continue
			}
			if seen, _ := base.m.apply(n.find, func(*needle) error { return nil }); !bytes.Equal(seen, n.find) {
				n.find = seen
				ns = append(ns, n)
			}
		}
	}
	c := *opts
	c.m, c.names = newMatcher(ns), &nameIndex{}
	return &c
}

// Ready builds s's search tables now, which are otherwise built by the
// first text s searches: a table built in the background (the gateway's
// combined table of every held credential) costs no request its time.
func (s *Scrubber) Ready() {
	if !s.m.empty() && s.m.minLen >= 2 {
		s.m.table()
	}
}

// MaxPiecesText is the longest text Pieces reads; the rest is cut off.
const MaxPiecesText = 1024

// Pieces returns the first MaxPiecesText bytes of b with every run of at
// least the minimum length (ScrubOptions.MinLength) that occurs anywhere
// in a form of a secret redacted, and how many runs were: whole forms and
// pieces of them, such as a secret cut at a space or at the end of a
// quoted line. It is for short texts the gateway writes itself (an error
// text quoting what an upstream sent, for a log line), not for bodies:
// its cost grows with the text's length times the forms' total length.
func (s *Scrubber) Pieces(b []byte) ([]byte, int) {
	if len(b) > MaxPiecesText {
		b = b[:MaxPiecesText]
	}
	out := make([]byte, 0, len(b))
	n := 0
	for i := 0; i < len(b); {
		l := s.longestPiece(b[i:])
		if l < s.minLen {
			out = append(out, b[i])
			i++
			continue
		}
		out = append(out, sameLength(s.marker, l)...)
		i += l
		n++
	}
	return out, n
}

// longestPiece returns the length of the longest prefix of b that occurs
// in some form of a secret.
func (s *Scrubber) longestPiece(b []byte) int {
	best := 0
	for _, nd := range s.m.needles {
		f := nd.find
		for j := 0; j+best < len(f); j++ {
			k := 0
			for k < len(b) && j+k < len(f) && b[k] == f[j+k] {
				k++
			}
			best = max(best, k)
		}
	}
	return best
}

// sameLength returns marker padded with '*' to n bytes, or n '*' when
// marker is longer than n.
func sameLength(marker string, n int) string {
	if len(marker) > n {
		return strings.Repeat("*", n)
	}
	return marker + strings.Repeat("*", n-len(marker))
}

// ScrubCount counts the occurrences a Scrubber redacted in one response,
// for the audit line. It is safe to read while the body is streaming; the
// total is final once the body was read to its end.
type ScrubCount struct{ n atomic.Int64 }

// Count returns the occurrences redacted so far.
func (c *ScrubCount) Count() int64 {
	if c == nil {
		return 0
	}
	return c.n.Load()
}

func (c *ScrubCount) hit(*needle) error { c.n.Add(1); return nil }

// ResponseTransform rewrites an upstream response before the client sees
// it. The gateway calls it once per response, right after the upstream
// round trip, and audits the count when the body is done.
type ResponseTransform interface {
	TransformResponse(resp *http.Response) (*ScrubCount, error)
}

var _ ResponseTransform = (*Scrubber)(nil)

// PrepareRequest sets the outbound request's Accept-Encoding to what the
// scrubber can decode ("gzip, deflate, br"), or to identity with
// ScrubOptions.IdentityEncoding, replacing what the client asked for, so
// an upstream never answers in an encoding that cannot be scrubbed.
// Call it before the round trip (Go's transport then neither adds its own
// gzip nor decompresses behind the gateway's back).
func (s *Scrubber) PrepareRequest(r *http.Request) {
	if s.identity {
		r.Header.Set("Accept-Encoding", "identity")
		return
	}
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
}

// Bytes returns b with every secret form redacted and how many were (a
// WebSocket text frame from upstream, say). b is returned itself when
// nothing matched.
func (s *Scrubber) Bytes(b []byte) ([]byte, int) {
	n := 0
	out, _ := s.m.apply(b, func(*needle) error { n++; return nil })
	return out, n
}

// Header redacts every value of h in place, removes every field whose
// name holds a form of a secret, and returns how many occurrences it
// redacted or removed. A name is searched whatever its case: the
// upstream's case does not reach the gateway (Go's HTTP/1.1 client
// canonicalises a name, upper-casing the letter after each '-'; HTTP/2
// sends names in lower case), so an upstream echoing the secret as a
// field name would otherwise pass it on with only its case changed. A
// name cannot hold the marker (it is no token), so the field goes whole.
func (s *Scrubber) Header(h http.Header) int {
	total := 0
	for k, vs := range h {
		if s.nameHolds(k) {
			delete(h, k)
			total++
			continue
		}
		for i, v := range vs {
			out, n := s.Bytes([]byte(v))
			if n > 0 {
				vs[i] = string(out)
				total += n
			}
		}
		h[k] = vs
	}
	return total
}

// Reader wraps r so that every secret form is redacted from what is read,
// counting into c. It holds back at most the longest form minus one byte.
// Close closes r when it is an io.Closer.
func (s *Scrubber) Reader(r io.Reader, c *ScrubCount) io.ReadCloser {
	if c == nil {
		c = &ScrubCount{}
	}
	if s.m.empty() {
		return readCloser(r)
	}
	return newStreamReader(r, s.m, c.hit)
}

// TransformResponse scrubs resp's headers now and wraps its body, which is
// decoded first when it has a Content-Encoding (gzip, x-gzip, deflate —
// zlib or raw — and br, in any combination). The client then gets the
// decoded body without Content-Encoding, and with no Content-Length (it
// changes with each redaction; the server sends it chunked or, for
// HTTP/1.0, until close) — except with ScrubOptions.KeepLength, under
// which an unencoded body keeps its Content-Length. Trailers are scrubbed when the body reaches its
// end, before the reader returns io.EOF, so a caller copying trailers
// after the body sees them scrubbed. An encoding it cannot decode returns
// ErrUnsupportedEncoding and leaves the body untouched; the caller must
// not forward it.
func (s *Scrubber) TransformResponse(resp *http.Response) (*ScrubCount, error) {
	if s.m.empty() {
		return &ScrubCount{}, nil
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		c := &ScrubCount{}
		c.n.Add(int64(s.Header(resp.Header)))
		c.n.Add(int64(s.Header(resp.Trailer)))
		return c, nil
	}
	// One allocation holds the count, the stream state and the closers;
	// the buffer is the other (sized to the announced body).
	sb := &scrubBody{s: s, bodyEnds: bodyEnds{resp: resp, raw: resp.Body}}
	sb.c.n.Add(int64(s.Header(resp.Header)))
	sb.body = readCloser(sb.raw)
	// What the body announced, while it is read as it came (a decoded
	// body's length is unknown).
	expect := resp.ContentLength
	if len(resp.Header.Values("Content-Encoding")) > 0 || !s.keepLen {
		var err error
		if sb.body, err = decodeResponse(resp); err != nil {
			return &sb.c, err
		}
		expect = -1
	}
	sb.init(sb.body, s.m, nil, expect)
	if grpcFramed(resp.Header) {
		sb.frames = &grpcFrames{}
	}
	sb.hits = &sb.c
	sb.atEOF = sb.end
	resp.Body = sb
	return &sb.c, nil
}

// scrubBody is a response body TransformResponse scrubs.
type scrubBody struct {
	streamReader
	bodyEnds
	s *Scrubber
}

// end runs when the scrubbed body reached its end: trailers are scrubbed
// there.
func (b *scrubBody) end() error {
	if err := b.drain(); err != nil {
		return err
	}
	b.c.n.Add(int64(b.s.Header(b.resp.Trailer)))
	return nil
}

// Close closes the decoder, if any, and the raw body.
func (b *scrubBody) Close() error { return b.bodyEnds.Close() }

// bodyEnds is what a scrubbed response body (scrubBody, liveBody) keeps
// besides its reader: the count, the response whose trailers it scrubs
// at the end, and the body as it came (raw) and as it is scrubbed
// (body: raw, or raw decoded).
type bodyEnds struct {
	c         ScrubCount
	resp      *http.Response
	raw, body io.ReadCloser
}

// drain reads the rest of a decoded body's raw body, where net/http fills
// in the trailers: a decoder may stop at the end of its data before the
// raw body reached its end.
func (b *bodyEnds) drain() error {
	if b.body != b.raw {
		if _, err := io.CopyN(io.Discard, b.raw, 64<<10); err != nil && err != io.EOF {
			return fmt.Errorf("transform: read response after its encoded data: %w", err)
		}
	}
	return nil
}

// Arrived implements Arrival: the scrubbed body (decoded or not) is
// read from the raw body alone, so it waits for nothing once the raw
// body arrived whole.
func (b *bodyEnds) Arrived() bool { return ArrivedWhole(b.raw) }

// Arrival is a body that can tell whether the rest of it is in memory
// already, so that reading it to its end waits for nothing from its
// source (the gateway's upstream client's bodies, and the scrubbed
// bodies over them).
type Arrival interface {
	Arrived() bool
}

// ArrivedWhole reports whether r is an Arrival whose rest has arrived;
// false for a reader that cannot tell.
func ArrivedWhole(r io.Reader) bool {
	a, ok := r.(Arrival)
	return ok && a.Arrived()
}

// Close closes the decoder, if any, and the raw body.
func (b *bodyEnds) Close() error {
	var first error
	if b.body != b.raw {
		first = b.body.Close()
	}
	if err := b.raw.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// DecodeResponse replaces resp's body by its decoded form when it has a
// Content-Encoding (gzip, x-gzip, deflate — zlib or raw — and br, in any
// combination), removing Content-Encoding and Content-Length (the body's
// length is not known until it was read), for a caller that must read
// the body itself (the gateway's custody of JSON fields). An encoding it
// cannot decode returns ErrUnsupportedEncoding and leaves resp untouched.
func DecodeResponse(resp *http.Response) error {
	if resp.Body == nil || resp.Body == http.NoBody || len(resp.Header.Values("Content-Encoding")) == 0 {
		return nil
	}
	raw := resp.Body
	body, err := decodeResponse(resp)
	if err != nil {
		return err
	}
	resp.Body = &closeBoth{Reader: body, closers: []io.Closer{body, raw}}
	return nil
}

// decodeResponse returns resp's body decoded and clears the fields that
// described the encoded one.
func decodeResponse(resp *http.Response) (io.ReadCloser, error) {
	body, err := decode(resp.Body, resp.Header.Values("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = false
	return body, nil
}

// MaxStackedCodings is the most content codings a response may stack in
// its Content-Encoding (identity aside) and still be decoded. Every
// decoder costs tens of KiB before it has read a byte (a window, tables,
// a read buffer), so without a bound one response whose header repeats
// "deflate," a hundred thousand times would make the gateway allocate
// gigabytes. Servers apply one coding; a misconfigured one may apply the
// same twice.
const MaxStackedCodings = 3

// decode returns body decoded through each coding of Content-Encoding, the
// last applied first. More than MaxStackedCodings codings, brotli more
// than once, or a coding it does not know, is ErrUnsupportedEncoding,
// before any decoder is built.
func decode(body io.Reader, header []string) (io.ReadCloser, error) {
	var codings []string
	for _, h := range header {
		for c := range strings.SplitSeq(h, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				if len(codings) == MaxStackedCodings {
					return nil, fmt.Errorf("%w: more than %d content codings stacked (ask upstream for one coding or identity)", ErrUnsupportedEncoding, MaxStackedCodings)
				}
				codings = append(codings, c)
			}
		}
	}
	brs := 0
	for _, c := range codings {
		switch c {
		case "br":
			// Each brotli decoder may cost its window
			// (MaxBrotliWindowBits); one per response.
			if brs++; brs > 1 {
				return nil, fmt.Errorf("%w: brotli applied more than once (ask upstream for one coding or identity)", ErrUnsupportedEncoding)
			}
		case "gzip", "x-gzip", "deflate":
		default:
			return nil, fmt.Errorf("%w: %q (ask upstream for identity or drop the rule's scrubbing)", ErrUnsupportedEncoding, c)
		}
	}
	r := io.Reader(body)
	var closers []io.Closer
	for i := len(codings) - 1; i >= 0; i-- {
		switch codings[i] {
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("transform: decode gzip response: %w", err)
			}
			closers = append(closers, zr)
			r = zr
		case "deflate":
			// RFC 9110 deflate is zlib; some servers send raw deflate.
			br := bufio.NewReader(r)
			if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
				zr, err := zlib.NewReader(br)
				if err != nil {
					return nil, fmt.Errorf("transform: decode deflate response: %w", err)
				}
				closers = append(closers, zr)
				r = zr
			} else {
				fr := flate.NewReader(br)
				closers = append(closers, fr)
				r = fr
			}
		case "br":
			br := bufio.NewReaderSize(r, 16) // the smallest: one byte is peeked
			if err := checkBrotliWindow(br); err != nil {
				return nil, err
			}
			r = brotli.NewReader(br)
		}
	}
	return &closeBoth{Reader: r, closers: closers}, nil
}

// MaxBrotliWindowBits bounds the window of a brotli stream the gateway
// decodes: 2^22 bytes (4 MiB), the reference encoder's default window
// (BROTLI_DEFAULT_WINDOW), which Node's and Python's encoders keep too;
// nginx's and Apache's brotli modules use smaller ones. A decoder's ring
// buffer grows to the window the stream's first byte declares as its
// output grows, and RFC 7932 allows 16 MiB (WBITS 24): a hostile upstream's
// 418 bytes of brotli (32 MiB of zeros) made the gateway allocate 31 MiB
// for one response, and hold it as long as the upstream kept the response
// open. A stream with a larger window is ErrUnsupportedEncoding, before
// its decoder is built.
const MaxBrotliWindowBits = 22

// checkBrotliWindow reads the window size (WBITS, RFC 7932 §9.1) from the
// first byte of the brotli stream br, without consuming it, and returns
// ErrUnsupportedEncoding when it is over MaxBrotliWindowBits or the
// large-window extension (not RFC 7932; the decoder refuses it too). A
// body that ends before its first byte is left to the decoder, which
// reports it.
func checkBrotliWindow(br *bufio.Reader) error {
	b, err := br.Peek(1)
	if err != nil {
		return nil
	}
	bits := brotliWindowBits(b[0])
	if bits < 0 {
		return fmt.Errorf("%w: a brotli stream with the large-window extension (not RFC 7932; ask upstream for gzip or identity)", ErrUnsupportedEncoding)
	}
	if bits > MaxBrotliWindowBits {
		return fmt.Errorf("%w: a brotli stream with a %d MiB window (WBITS %d), over the %d MiB the gateway decodes (ask upstream for gzip, identity, or brotli with a window of at most %d bits)", ErrUnsupportedEncoding, 1<<(bits-20), bits, 1<<(MaxBrotliWindowBits-20), MaxBrotliWindowBits)
	}
	return nil
}

// brotliWindowBits is the WBITS a brotli stream's first byte declares
// (RFC 7932 §9.1: 16 in one bit, 17 to 24 in four, 10 to 15 and 17 in
// seven), or -1 for the large-window extension's marker.
func brotliWindowBits(b byte) int {
	if b&1 == 0 {
		return 16
	}
	switch n, m := b>>1&7, b>>4&7; {
	case n != 0:
		return 17 + int(n)
	case m == 1:
		return -1
	case m != 0:
		return 8 + int(m)
	}
	return 17
}

// closeBoth closes each of its closers, returning the first error.
type closeBoth struct {
	io.Reader
	closers []io.Closer
}

func (c *closeBoth) Close() error {
	var first error
	for _, cl := range c.closers {
		if err := cl.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func readCloser(r io.Reader) io.ReadCloser {
	if rc, ok := r.(io.ReadCloser); ok {
		return rc
	}
	return io.NopCloser(r)
}

// Format implements fmt.Formatter: every verb prints how many forms are
// scrubbed, never one of them.
func (s Scrubber) Format(f fmt.State, _ rune) {
	n := 0
	if s.m != nil {
		n = len(s.m.needles)
	}
	fmt.Fprintf(f, "transform.Scrubber{forms: %d}", n)
}

// nameIndex is a Scrubber's search of field names: its forms that a name
// can hold (only token characters, RFC 9110 §5.6.2), in lower case.
type nameIndex struct {
	once sync.Once
	m    *matcher
}

// matcher returns the index's matcher, building it from forms on first
// use.
func (x *nameIndex) matcher(forms *matcher) *matcher {
	x.once.Do(func() {
		var ns []needle
		for _, n := range forms.needles {
			if !isToken(n.find) {
				continue
			}
			ns = append(ns, needle{find: bytes.ToLower(n.find), act: n.act, id: n.id})
		}
		x.m = newMatcher(ns)
	})
	return x.m
}

// nameHolds reports whether the field name holds a form of one of s's
// secrets, ignoring the case of ASCII letters.
func (s *Scrubber) nameHolds(name string) bool {
	if s.m.empty() || len(name) < s.m.minLen {
		return false
	}
	m := s.names.matcher(s.m)
	if m.empty() || len(name) < m.minLen {
		return false
	}
	var buf [128]byte
	b := buf[:0]
	if len(name) > len(buf) {
		b = make([]byte, 0, len(name))
	}
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	at, _ := m.first(b)
	return at >= 0
}

// isToken reports whether b is made of token characters only (RFC 9110
// §5.6.2), the characters of a field name.
func isToken(b []byte) bool {
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return len(b) > 0
}
