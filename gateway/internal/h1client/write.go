package h1client

import (
	"bufio"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The request head is written by writeHead, which produces the bytes
// (*http.Request).Write produces (net/http's request.go write,
// transfer.go writeHeader, header.go writeSubset) without their
// allocations: fmt.Fprintf for the request line, Host and User-Agent,
// the request URI built by concatenation, the header sorter's pool round
// trip, strconv for Content-Length. planHead decides before anything is
// written whether the request is one writeHead covers; any other goes to
// Request.Write. FuzzWriteRequest and TestWriteRequest hold the two to
// the same bytes.

// reqWriter is a pooled buffered writer for requests, with the scratch
// space writeHead sorts the header fields in.
type reqWriter struct {
	bw  *bufio.Writer
	kvs []keyValues
}

// write writes r, its body held by rb (nil for a request without one),
// to rw's writer as r.Write would: with writeHead when planHead covers
// the request, else with Request.Write (given rb's copy of r, whose body
// reads the bytes held from their start). trace is r's context's.
func (rw *reqWriter) write(r *http.Request, rb *reqBuf, trace *httptrace.ClientTrace) error {
	if h, ok := planHead(r, rb != nil, trace); ok {
		var body []byte
		if rb != nil {
			body = rb.b[:rb.n]
		}
		rw.writeHead(r, &h, body)
		return nil
	}
	if rb == nil {
		return r.Write(rw.bw)
	}
	rb.rewind()
	return rb.req.Write(rw.bw)
}

// keyValues is one header field and its values.
type keyValues struct {
	key    string
	values []string
}

// head is what planHead found of a request: the parts of its request
// line and Host and User-Agent fields as Request.Write would write them.
type head struct {
	method string
	// path and query make the request URI: path, then "?" and query
	// when hasQuery.
	path, query string
	hasQuery    bool
	// host is written as host[:zone] + host[zoneEnd:] (an IPv6 zone
	// removed); zone == len(host) when there is none.
	host          string
	zone, zoneEnd int
	ua            string
	hasUA         bool
}

// planHead reports whether writeHead writes r as r.Write would, and
// what it needs to. It covers a request without a body (Body nil or
// http.NoBody, ContentLength 0) or with one of ContentLength > 0 bytes
// that the caller holds (hasBody: writeHead is then given exactly
// ContentLength bytes). It leaves to Request.Write: a request with
// Close, TransferEncoding or Trailer set, an opaque URL, CONNECT, a host
// that is not ASCII (Punycode), a request URI with a control byte
// (Write's error), and a request whose context's ClientTrace wants to
// hear of the fields written (trace's WroteHeaderField, WroteHeaders,
// WroteRequest). Of these, eligible lets through only the last, which
// the gateway never makes (its trace has Got1xxResponse alone).
func planHead(r *http.Request, hasBody bool, trace *httptrace.ClientTrace) (h head, ok bool) {
	if r.URL == nil || r.Close || len(r.TransferEncoding) != 0 || r.Trailer != nil ||
		r.URL.Opaque != "" || r.Method == http.MethodConnect {
		return head{}, false
	}
	if trace != nil && (trace.WroteHeaderField != nil || trace.WroteHeaders != nil || trace.WroteRequest != nil) {
		return head{}, false
	}
	noBody := r.Body == nil || r.Body == http.NoBody
	switch {
	case r.ContentLength == 0 && noBody && !hasBody:
	case r.ContentLength > 0 && !noBody && hasBody:
	default:
		return head{}, false
	}
	h.method = r.Method
	if h.method == "" {
		h.method = http.MethodGet
	}

	// The request URI: url.URL.RequestURI without the concatenation.
	h.path = r.URL.EscapedPath()
	if h.path == "" {
		h.path = "/"
	}
	h.query, h.hasQuery = r.URL.RawQuery, r.URL.ForceQuery || r.URL.RawQuery != ""
	if hasCTL(h.path) || hasCTL(h.query) {
		return head{}, false // Write's "can't write control character"
	}

	// Host: as Write's, which leaves an ASCII host unchanged by
	// Punycode, empties one with a byte not valid in a Host field, and
	// removes an IPv6 zone.
	h.host = r.Host
	if h.host == "" {
		h.host = r.URL.Host
	}
	for i := 0; i < len(h.host); i++ {
		if h.host[i] >= 0x80 {
			return head{}, false
		}
	}
	if !httpguts.ValidHostHeader(h.host) {
		h.host = ""
	}
	h.zone, h.zoneEnd = len(h.host), len(h.host)
	if strings.HasPrefix(h.host, "[") {
		if i := strings.LastIndex(h.host, "]"); i >= 0 {
			if j := strings.LastIndex(h.host[:i], "%"); j >= 0 {
				h.zone, h.zoneEnd = j, i
			}
		}
	}

	// User-Agent: net/http's default unless the header has the key,
	// whose first value (perhaps blank: no field) is then written.
	h.ua, h.hasUA = "Go-http-client/1.1", true
	if vv, ok := r.Header["User-Agent"]; ok {
		h.ua = ""
		if len(vv) > 0 {
			h.ua = vv[0]
		}
		h.hasUA = h.ua != ""
	}
	return h, true
}

// hasCTL reports whether s holds an ASCII control byte or DEL, as
// net/http's stringContainsCTLByte.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}

// writeHead writes r, planned by planHead as h, and body (nil, or
// r.ContentLength bytes) to rw's writer. Errors are the writer's, kept
// by it: the caller's Flush returns them.
func (rw *reqWriter) writeHead(r *http.Request, h *head, body []byte) {
	bw := rw.bw
	bw.WriteString(h.method)
	bw.WriteByte(' ')
	bw.WriteString(h.path)
	if h.hasQuery {
		bw.WriteByte('?')
		bw.WriteString(h.query)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(h.host[:h.zone])
	bw.WriteString(h.host[h.zoneEnd:])
	bw.WriteString("\r\n")
	if h.hasUA {
		bw.WriteString("User-Agent: ")
		writeValue(bw, h.ua)
		bw.WriteString("\r\n")
	}

	// transferWriter.writeHeader: Content-Length for a body, and a zero
	// one for the methods whose servers expect it (Close, chunking and
	// trailers are Request.Write's).
	switch {
	case len(body) > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
		bw.WriteString("\r\n")
	case h.method == http.MethodPost || h.method == http.MethodPut || h.method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}

	// Header.writeSubset with reqWriteExcludeHeader: the other fields
	// sorted by key (keys are compared as they are, not canonicalised),
	// a key that is not a token dropped, each value with CR and LF
	// replaced by spaces and trimmed.
	kvs := rw.kvs[:0]
	for k, vv := range r.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		kvs = append(kvs, keyValues{k, vv})
	}
	slices.SortFunc(kvs, func(a, b keyValues) int { return strings.Compare(a.key, b.key) })
	for _, kv := range kvs {
		if !httpguts.ValidHeaderFieldName(kv.key) {
			continue
		}
		for _, v := range kv.values {
			bw.WriteString(kv.key)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	clear(kvs) // the pool keeps no request's strings
	rw.kvs = kvs[:0]
	bw.WriteString("\r\n")
	bw.Write(body)
}

// writeValue writes v as net/http writes a field value: CR and LF
// replaced by spaces, then spaces and tabs trimmed at both ends (the
// same as trimming all four first, then replacing).
func writeValue(bw *bufio.Writer, v string) {
	v = textproto.TrimString(v)
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		bw.WriteString(v) // the common case, and all the Client sends
		return
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			bw.WriteByte(' ')
		} else {
			bw.WriteByte(c)
		}
	}
}
