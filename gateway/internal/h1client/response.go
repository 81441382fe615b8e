package h1client

import (
	"bufio"
	"bytes"
	"io"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// The common response is read without http.ReadResponse: a final
// HTTP/1.1 response to a request other than HEAD, whose header block has
// already arrived whole (it is in the connection's read buffer), whose
// fields are plain (tokens for names, visible ASCII, spaces and tabs for
// values, CRLF line ends, no folded lines) and whose body is framed by
// one Content-Length and nothing else: no Transfer-Encoding, Trailer,
// Pragma or "Connection: close", status not 204 or 304. Such a response
// costs 4 allocations here (the block's text, the header map, its values,
// and one for the response, its body and the body's reader) against
// about 14 through ReadResponse, and a single pass over the block.
//
// Every other response, and any byte this parser does not expect, goes
// to http.ReadResponse with nothing consumed: the fast path only ever
// declines, it never answers differently. FuzzFastResponse holds it to
// that: whatever it accepts, ReadResponse reads to the same response,
// body, errors and leftover bytes.

// fastResponse is a response the fast path read, with its body: one
// allocation.
type fastResponse struct {
	resp http.Response
	body body
	lb   lengthBody
}

// lengthBody is a body of declared length read from br, with the
// semantics of net/http's: io.ErrUnexpectedEOF when the connection ends
// before the length, io.EOF with the last bytes.
type lengthBody struct {
	lr     io.LimitedReader
	sawEOF bool
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	n, err := b.lr.Read(p)
	if err == io.EOF {
		b.sawEOF = true
		if b.lr.N > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil && n > 0 && b.lr.N == 0 {
		err = io.EOF
		b.sawEOF = true
	}
	return n, err
}

// Close does nothing: the connection's body (body) ends the connection.
func (b *lengthBody) Close() error { return nil }

// Names whose presence sends a response to ReadResponse: they change the
// framing or the header (fixPragmaCacheControl) in ways the fast path
// does not reproduce.
const (
	flagTE = 1 << iota
	flagTrailer
	flagPragma
)

// readFastResponse reads r's response from br when it is of the common
// form above; it returns nil, having consumed nothing, otherwise. max
// bounds the header block.
func readFastResponse(br *bufio.Reader, r *http.Request, max int64) *fastResponse {
	if r.Method == http.MethodHead {
		return nil
	}
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return nil // ReadResponse meets the same error
		}
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 || int64(end+4) > max {
		return nil // not all here: ReadResponse waits for the rest
	}
	block := buf[:end+2] // the status line and the fields, each ending in CRLF

	// The status line: "HTTP/1.1 " 3 digits, then the end or " " reason.
	nl := bytes.Index(block, crlf)
	line := block[:nl]
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " ||
		line[9] < '2' || line[9] > '5' || !isDigit(line[10]) || !isDigit(line[11]) ||
		len(line) > 12 && line[12] != ' ' || !plainValue(line[12:]) {
		return nil
	}
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if code == http.StatusNoContent || code == http.StatusNotModified {
		return nil
	}

	// First pass: validate the fields and count them.
	n := 0
	for rest := block[nl+2:]; len(rest) > 0; n++ {
		i := bytes.Index(rest, crlf)
		if _, vs, ve, ok := splitField(rest[:i]); !ok || !plainValue(rest[vs:ve]) {
			return nil
		}
		rest = rest[i+2:]
	}

	// Second pass: the header, its strings cut from one copy of the block.
	text := string(block)
	h := make(http.Header, n)
	strs := make([]string, n)
	var cl []string
	flags := 0
	var key [64]byte
	off := nl + 2
	for off < len(text) {
		i := off + bytes.Index(block[off:], crlf)
		ne, vs, ve, _ := splitField(block[off:i])
		k := canonicalKey(text[off:off+ne], block[off:off+ne], key[:0])
		v := text[off+vs : off+ve]
		vv := h[k]
		if vv == nil && len(strs) > 0 {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[k] = vv
		} else {
			h[k] = append(vv, v)
		}
		switch k {
		case "Content-Length":
			cl = h[k]
		case "Transfer-Encoding":
			flags |= flagTE
		case "Trailer":
			flags |= flagTrailer
		case "Pragma":
			flags |= flagPragma
		}
		off = i + 2
	}
	if flags != 0 || len(cl) != 1 {
		return nil
	}
	length, ok := parseLength(cl[0])
	if !ok {
		return nil
	}
	if c := h["Connection"]; c != nil && httpguts.HeaderValuesContainsToken(c, "close") {
		return nil
	}
	if _, err := br.Discard(end + 4); err != nil {
		return nil // cannot happen: the bytes are buffered
	}
	fr := &fastResponse{resp: http.Response{
		Status:        text[9:nl],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       r,
	}}
	if length == 0 {
		fr.resp.Body = http.NoBody
	} else {
		fr.lb.lr = io.LimitedReader{R: br, N: length}
		fr.resp.Body = &fr.lb
	}
	return fr
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// plainValue reports whether v holds only visible ASCII, spaces and tabs.
func plainValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c > '~' {
			return false
		}
	}
	return true
}

// splitField splits a field line at its colon: the name, a token, is
// line[:ne], and the value without the spaces and tabs around it (as
// textproto trims them) line[vs:ve]. ok is false for a line textproto
// would read otherwise or refuse (a folded line, a name that is not a
// token, no colon).
func splitField(line []byte) (ne, vs, ve int, ok bool) {
	ne = bytes.IndexByte(line, ':')
	if ne <= 0 {
		return 0, 0, 0, false
	}
	for _, c := range line[:ne] {
		if !httpguts.IsTokenRune(rune(c)) {
			return 0, 0, 0, false
		}
	}
	vs, ve = ne+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	return ne, vs, ve, true
}

// canonicalKey returns the canonical form of the field name name (a
// token; as is, its text in the block): an interned string for the
// common names, as itself when already canonical, a new string otherwise.
func canonicalKey(as string, name, buf []byte) string {
	upper := true
	canon := true
	for _, c := range name {
		d := c
		if upper && 'a' <= c && c <= 'z' {
			d = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			d = c + ('a' - 'A')
		}
		if d != c {
			canon = false
		}
		buf = append(buf, d)
		upper = d == '-'
	}
	if k, ok := commonKeys[string(buf)]; ok {
		return k
	}
	if canon {
		return as
	}
	return string(buf)
}

// parseLength parses a Content-Length as net/http does (decimal digits,
// at most 2^63-1), for up to 18 digits; longer is left to ReadResponse.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// commonKeys interns the field names upstreams send most.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Age", "Alt-Svc", "Cache-Control", "Connection", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Security-Policy", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive",
		"Last-Modified", "Link", "Location", "Pragma", "Referrer-Policy", "Retry-After", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Vary", "Via",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
		"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "X-Xss-Protection",
		"X-Amz-Id-2", "X-Amz-Request-Id", "X-Github-Request-Id",
	} {
		m[k] = k
	}
	return m
}()
