// Package msghead reads the head of an HTTP/1.1 message of the plain,
// common form without net/textproto: the header block already whole in
// a bufio.Reader's buffer, CRLF line ends, token field names, field
// values of visible ASCII, spaces and tabs, no folded lines. It makes one
// pass over the block and cuts every string from one copy of it.
//
// It only ever declines: for any other form its callers (the upstream
// client's response reader, the tunnel server's request reader) leave
// the message to net/http's ReadResponse or ReadRequest with nothing
// consumed, and each caller's differential fuzz test holds what it
// accepts to what net/http reads from the same bytes.
package msghead

import (
	"bufio"
	"bytes"
	"io"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

var crlf = []byte("\r\n")

// Block returns the message head at the start of br's buffer: the start
// line and the fields, each ending in CRLF, and the blank line's CRLF.
// It reads more only while the head is incomplete, the buffer has room
// and what has arrived is the beginning of a plain head whose start line
// start accepts; so it never waits for bytes net/http's readers would
// not wait for: they end or refuse the head at the first line it cannot
// take, or sooner. It returns ok false, having consumed nothing, when
// a line is not of the plain form or start refuses the start line, the
// head does not end within max bytes or the buffer, or a read fails
// first (the caller's fallback then meets the same end).
func Block(br *bufio.Reader, max int, start func(line []byte) bool) (head []byte, ok bool) {
	n := br.Buffered()
	if n == 0 {
		n = 1
	}
	var sc scanner
	for {
		_, err := br.Peek(n)
		buf, _ := br.Peek(br.Buffered()) // all that has arrived
		end, bad := sc.scan(buf, start)
		switch {
		case bad:
			return nil, false
		case end > 0:
			if end > max {
				return nil, false
			}
			return buf[:end], true
		case err != nil || len(buf) >= br.Size() || len(buf) >= max:
			return nil, false
		}
		n = len(buf) + 1
	}
}

// scanner checks a head's bytes as they arrive.
type scanner struct {
	i         int  // bytes checked
	lineStart int  // where the current line began
	fields    bool // the start line is done
	colon     bool // the current field line's colon was seen
}

// scan checks buf from where it stopped: end is the head's length once
// its blank line has arrived, bad reports a byte or line of another form.
func (sc *scanner) scan(buf []byte, start func([]byte) bool) (end int, bad bool) {
	for sc.i < len(buf) {
		c := buf[sc.i]
		if sc.i > 0 && buf[sc.i-1] == '\r' && c != '\n' {
			return 0, true // a CR alone
		}
		switch {
		case c == '\n':
			if sc.i == 0 || buf[sc.i-1] != '\r' {
				return 0, true // a bare LF
			}
			line := buf[sc.lineStart : sc.i-1]
			switch {
			case !sc.fields:
				if !start(line) {
					return 0, true
				}
				sc.fields = true
			case len(line) == 0:
				return sc.i + 1, false
			case !sc.colon:
				return 0, true
			}
			sc.lineStart, sc.colon = sc.i+1, false
		case c == '\r':
			// Checked with the next byte.
		case !sc.fields || sc.colon:
			// A run of plain bytes, up to the line's CR.
			j := sc.i
			for j < len(buf) && class[buf[j]]&plain != 0 {
				j++
			}
			if j == sc.i {
				return 0, true
			}
			sc.i = j
			continue
		case c == ':':
			if sc.i == sc.lineStart {
				return 0, true // no name
			}
			sc.colon = true
		case class[c]&token == 0:
			return 0, true
		}
		sc.i++
	}
	return 0, false
}

func plainByte(c byte) bool { return class[c]&plain != 0 }

// Byte classes of a head: token (a field name's), plain (a value's).
const (
	token = 1 << iota
	plain
)

// class holds each byte's classes; it is never written after init.
var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if c >= ' ' && c <= '~' || c == '\t' {
			t[c] |= plain
		}
		if c < 128 && httpguts.IsTokenRune(rune(c)) {
			t[c] |= token
		}
	}
	return t
}()

// Fields reads the fields of head, as Block returned it (which checked
// every byte), after its start line, which ends at lineEnd (the index of
// its CRLF). It returns the copy of head the header's strings are cut
// from, for the caller to cut the start line's from too. Values are
// trimmed of spaces and tabs, names canonical and repeated names' values
// kept in order, as textproto.ReadMIMEHeader does.
//
// vals, when it has room for every field, holds the header's values
// (each name's first one; h's slices are cut from it with no room to
// grow into a neighbour's): an array in the caller's own allocation for
// the message, which spares one allocation per head. It must belong to
// this message alone, never reused for another: the header keeps it.
func Fields(head []byte, lineEnd int, vals []string) (text string, h http.Header) {
	fields := head[lineEnd+2 : len(head)-2]
	n := bytes.Count(fields, crlf)
	text = string(head[:len(head)-2])
	h = make(http.Header, n)
	var strs []string
	if cap(vals) >= n {
		strs = vals[:n:n]
	} else {
		strs = make([]string, n)
	}
	var key [64]byte
	for off := lineEnd + 2; off < len(text); {
		i := off + bytes.Index(head[off:], crlf)
		ne, vs, ve := split(head[off:i])
		k := canonicalKey(text[off:off+ne], head[off:off+ne], key[:0])
		v := text[off+vs : off+ve]
		vv := h[k]
		if vv == nil && len(strs) > 0 {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[k] = vv
		} else {
			h[k] = append(vv, v)
		}
		off = i + 2
	}
	return text, h
}

// Plain reports whether v holds only visible ASCII, spaces and tabs.
func Plain(v []byte) bool {
	for _, c := range v {
		if !plainByte(c) {
			return false
		}
	}
	return true
}

// split splits a field line Block checked at its colon: the name is
// line[:ne], and the value without the spaces and tabs around it (as
// textproto trims them) line[vs:ve].
func split(line []byte) (ne, vs, ve int) {
	ne = bytes.IndexByte(line, ':')
	vs, ve = ne+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	return ne, vs, ve
}

// canonicalKey returns the canonical form of the field name name (a
// token; as is, its text in the head): an interned string for the
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
	if k, ok := common[string(buf)]; ok {
		return k
	}
	if canon {
		return as
	}
	return string(buf)
}

// ParseLength parses a Content-Length as net/http does (decimal digits,
// at most 2^63-1), for up to 18 digits; ok is false for anything else,
// longer values included, which the caller leaves to net/http.
func ParseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// common interns the field names clients and upstreams send most. It is
// never written after init.
var common = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Age", "Alt-Svc", "Authorization", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Security-Policy", "Content-Type", "Cookie", "Date", "Etag", "Expect", "Expires",
		"Host", "If-Match", "If-Modified-Since", "If-None-Match", "Keep-Alive", "Last-Modified",
		"Link", "Location", "Origin", "Pragma", "Proxy-Authorization", "Range", "Referer",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via",
		"Www-Authenticate", "X-Amz-Content-Sha256", "X-Amz-Date", "X-Amz-Id-2", "X-Amz-Request-Id",
		"X-Api-Key", "X-Content-Type-Options", "X-Forwarded-For", "X-Frame-Options",
		"X-Github-Request-Id", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset",
		"X-Request-Id", "X-Xss-Protection",
	} {
		m[k] = k
	}
	return m
}()

// LengthBody is a body of declared length read from a message's reader,
// with the semantics of net/http's: io.ErrUnexpectedEOF when the reader
// ends before the length, io.EOF with the last bytes, io.EOF on every
// read after an end. Its zero value is an empty body; Reset sets it up.
type LengthBody struct {
	lr     io.LimitedReader
	sawEOF bool
}

// Reset makes b the next n bytes of r.
func (b *LengthBody) Reset(r io.Reader, n int64) {
	*b = LengthBody{lr: io.LimitedReader{R: r, N: n}}
}

func (b *LengthBody) Read(p []byte) (int, error) {
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

// Arrived reports whether the rest of the body is in the reader under it
// already (a *bufio.Reader's buffer, which it tells), so that reading it
// to its end waits for nothing; false when the reader cannot tell.
func (b *LengthBody) Arrived() bool {
	if b.sawEOF {
		return true
	}
	br, ok := b.lr.R.(interface{ Buffered() int })
	return ok && int64(br.Buffered()) >= b.lr.N
}

// Close does nothing: the caller decides what becomes of an unread rest
// (the upstream client closes the connection, the server drains it
// within its bound).
func (b *LengthBody) Close() error { return nil }
