package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/msghead"
)

// The common request is read without http.ReadRequest: an HTTP/1.1
// request in origin form ("/path?query"), with one of the usual methods,
// no body or one of a single Content-Length (no Transfer-Encoding), no
// Pragma or Trailer field and a single Host, whose head has
// arrived whole in the buffer and is of msghead's plain form. Its URL is
// parsed by url.ParseRequestURI, as ReadRequest parses it, or made
// without it when the parse would keep the target as it is (plainTarget).
// It costs 4 allocations (the head's text, the header map and its first
// insert, and one for the request with its URL, body, values and the
// server's response) against ReadRequest's 11 for curl's request, and
// one pass over the head. A Connection field (Python's requests and Node send
// "keep-alive" on every request) stays in the header and sets Close when
// it lists "close", as ReadRequest's shouldClose does for HTTP/1.1. A
// proxy's CONNECT is read here too when its target is the
// plain authority form "name:port" (a name of letters, digits, '-', '.',
// '_' and '~', a port of digits) and it has no body: its URL is the
// authority alone, as ReadRequest makes it. Everything else goes to
// ReadRequest with nothing consumed; FuzzFastRequest holds what this
// accepts to what ReadRequest reads from the same bytes (the whole
// *http.Request, reflect.DeepEqual).

// fastRequest is a request the fast path read, with its body, its URL,
// the values of up to len(vals) fields, and the server's response to it
// and wrapper of its body (serveRequest): one allocation. Nothing in it
// is ever reused for another request.
type fastRequest struct {
	req  http.Request
	body msghead.LengthBody
	url  url.URL
	vals [16]string
	w    response
	b    body
}

// fastMethods are the methods of the fast path. CONNECT is read only in
// the plain authority form (connectTarget); PRI (the HTTP/2 preface),
// which ReadRequest reads specially, never.
var fastMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", http.MethodConnect}

// readFastRequest reads the request at the start of br when it is of the
// common form above; it returns nil, having consumed nothing, otherwise.
// max bounds the head.
func readFastRequest(br *bufio.Reader, max int) *http.Request {
	if fr := readFast(br, max); fr != nil {
		return &fr.req
	}
	return nil
}

// readFast is readFastRequest, returning the request's fastRequest.
func readFast(br *bufio.Reader, max int) *fastRequest {
	head, ok := msghead.Block(br, max, fastRequestLine)
	if !ok {
		return nil
	}
	nl := bytes.Index(head, crlfBytes)
	line := head[:nl]
	sp := bytes.IndexByte(line, ' ')
	method := ""
	for _, m := range fastMethods {
		if string(line[:sp]) == m { // fastRequestLine found it
			method = m
			break
		}
	}
	fr := new(fastRequest)
	text, h := msghead.Fields(head, nl, fr.vals[:])
	if h["Transfer-Encoding"] != nil || h["Pragma"] != nil ||
		h["Trailer"] != nil || len(h["Host"]) > 1 {
		return nil
	}
	var length int64
	if cl := h["Content-Length"]; cl != nil {
		if len(cl) != 1 {
			return nil
		}
		if length, ok = msghead.ParseLength(cl[0]); !ok {
			return nil
		}
	}
	uri := text[sp+1 : nl-len(proto)]
	var u *url.URL
	if method == http.MethodConnect {
		// ReadRequest parses "http://"+uri and drops the scheme; for the
		// plain authority form fastRequestLine let through, that is a
		// URL of the authority alone. A body on a CONNECT is left to it.
		if h["Content-Length"] != nil {
			return nil
		}
		fr.url = url.URL{Host: uri}
		u = &fr.url
	} else if plainTarget(uri) {
		fr.url = originForm(uri)
		u = &fr.url
	} else {
		var err error
		if u, err = url.ParseRequestURI(uri); err != nil {
			return nil // ReadRequest refuses it with its own error
		}
	}
	if _, err := br.Discard(len(head)); err != nil {
		return nil // cannot happen: the bytes are buffered
	}
	fr.req = http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: length,
		RequestURI:    uri,
		Close:         httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
	}
	r := &fr.req
	if length > 0 {
		fr.body.Reset(br, length)
		r.Body = &fr.body
	}
	r.Host = u.Host
	if hv := h["Host"]; r.Host == "" && len(hv) == 1 {
		r.Host = hv[0]
	}
	delete(h, "Host") // as ReadRequest does
	return fr
}

// plainTarget reports whether target, an origin-form request target
// fastRequestLine accepted, has a path that url.ParseRequestURI keeps as
// it is: no escape to decode, no byte its path encoding would escape
// (so it sets no RawPath), one '?' at most. originForm makes its URL
// without the parse's allocation.
func plainTarget(target string) bool {
	q := false
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch {
		case c == '?':
			if q {
				return false
			}
			q = true
		case q:
			// The query is kept raw.
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/$&+,:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// originForm is url.ParseRequestURI(target) for a plainTarget: the path,
// and the query after its '?' (ForceQuery for a '?' that ends it).
func originForm(target string) url.URL {
	path, query, found := strings.Cut(target, "?")
	if found && query == "" {
		return url.URL{Path: path, ForceQuery: true}
	}
	return url.URL{Path: path, RawQuery: query}
}

var crlfBytes = []byte("\r\n")

// proto ends the request line of the fast path.
const proto = " HTTP/1.1"

// fastRequestLine reports whether line is the request line of a request
// the fast path reads: one of fastMethods, a space, an origin-form target
// of visible ASCII whose path's escapes are whole (for CONNECT, an
// authority of connectTarget's form), " HTTP/1.1".
func fastRequestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || len(line) < sp+2+len(proto) || !bytes.HasSuffix(line, []byte(proto)) {
		return false
	}
	known := false
	for _, m := range fastMethods {
		if string(line[:sp]) == m {
			known = true
			break
		}
	}
	target := line[sp+1 : len(line)-len(proto)]
	if known && sp == len(http.MethodConnect) && string(line[:sp]) == http.MethodConnect {
		return connectTarget(target)
	}
	if !known || target[0] != '/' {
		return false
	}
	path := true // before the first '?': ReadRequest's URL parse checks its escapes at once
	for i, c := range target {
		switch {
		case c <= ' ' || c > '~':
			return false
		case c == '?':
			path = false
		case c == '%' && path && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])):
			return false
		}
	}
	return true
}

// connectTarget reports whether target is a CONNECT target of the plain
// authority form: a name of letters, digits, '-', '.', '_' and '~' (RFC
// 3986's unreserved characters), a colon, a port of one to five digits.
// url.ParseRequestURI takes every such "http://"+target (no userinfo,
// IP literal, escape, second colon or path to parse), so ReadRequest
// reads it without error and the fast path never waits for a head that
// ReadRequest would refuse at its first line. Any other target (an IPv6
// literal, no port, an escape) is ReadRequest's.
func connectTarget(target []byte) bool {
	colon := bytes.IndexByte(target, ':')
	if colon <= 0 || len(target)-colon-1 < 1 || len(target)-colon-1 > 5 {
		return false
	}
	for _, c := range target[:colon] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	for _, c := range target[colon+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
