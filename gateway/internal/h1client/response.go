package h1client

import (
	"bufio"
	"bytes"
	"math"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/msghead"
)

// The common response is read without http.ReadResponse: a final
// HTTP/1.1 response to a request other than HEAD, whose header block has
// already arrived whole (it is in the connection's read buffer), whose
// fields are plain (tokens for names, visible ASCII, spaces and tabs for
// values, CRLF line ends, no folded lines) and whose body is framed by
// one Content-Length and nothing else: no Transfer-Encoding, Trailer,
// Pragma or "Connection: close", status not 204 or 304. Such a response
// costs 4 allocations here (the block's text, the header map and its
// first insert, and one for the response, its body, the body's reader
// and the values of up to 16 fields; package msghead reads the fields)
// against 11 through ReadResponse, and a single pass over the block.
//
// Every other response, and any byte this parser does not expect, goes
// to http.ReadResponse with nothing consumed: the fast path only ever
// declines, it never answers differently. FuzzFastResponse holds it to
// that: whatever it accepts, ReadResponse reads to the same response,
// body, errors and leftover bytes.

// fastResponse is a response the fast path read, with its body and the
// values of up to len(vals) fields: one allocation.
type fastResponse struct {
	resp http.Response
	body body
	lb   msghead.LengthBody
	vals [16]string
}

// ResponseSpace is room for one response the Client reads itself (the
// response, its body and its values), in an allocation the caller makes
// for the request anyway: a request whose context holds a
// *ResponseSpace under ResponseSpaceKey has its first such response read
// into it, and any other (a second attempt's, a reissue's) into an
// allocation of its own, so that no response ever overwrites another.
// Its zero value is ready; it must belong to that request alone, never
// to be used for another.
type ResponseSpace struct {
	fr   fastResponse
	used bool
}

// ResponseSpaceKey is the context key of a request's *ResponseSpace.
type ResponseSpaceKey struct{}

// take returns the space's response the first time, a new one after
// (or for a nil space).
func (sp *ResponseSpace) take() *fastResponse {
	if sp == nil || sp.used {
		return new(fastResponse)
	}
	sp.used = true
	return &sp.fr
}

// readFastResponse reads r's response from br when it is of the common
// form above, into sp's room when it has some; it returns nil, having
// consumed nothing, otherwise. max bounds the header block.
func readFastResponse(br *bufio.Reader, r *http.Request, max int64, sp *ResponseSpace) *fastResponse {
	if r.Method == http.MethodHead {
		return nil
	}
	head, ok := msghead.Block(br, int(min(max, math.MaxInt32)), finalStatusLine)
	if !ok {
		return nil // ReadResponse reads the rest or meets the same end
	}
	nl := bytes.Index(head, crlf)
	line := head[:nl]
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	fr := sp.take()
	text, h := msghead.Fields(head, nl, fr.vals[:])
	cl := h["Content-Length"]
	if len(cl) != 1 || h["Transfer-Encoding"] != nil || h["Trailer"] != nil || h["Pragma"] != nil {
		return nil
	}
	length, ok := msghead.ParseLength(cl[0])
	if !ok {
		return nil
	}
	if c := h["Connection"]; c != nil && httpguts.HeaderValuesContainsToken(c, "close") {
		return nil
	}
	if _, err := br.Discard(len(head)); err != nil {
		return nil // cannot happen: the bytes are buffered
	}
	fr.resp = http.Response{
		Status:        text[9:nl],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       r,
	}
	if length == 0 {
		fr.resp.Body = http.NoBody
	} else {
		fr.lb.Reset(br, length)
		fr.resp.Body = &fr.lb
	}
	return fr
}

var crlf = []byte("\r\n")

// finalStatusLine reports whether line is the status line of a final
// response the fast path reads: "HTTP/1.1 " and a code from 200 to 599
// but 204 and 304, then the line's end or a space and a reason of
// visible ASCII, spaces and tabs.
func finalStatusLine(line []byte) bool {
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " ||
		line[9] < '2' || line[9] > '5' || !isDigit(line[10]) || !isDigit(line[11]) ||
		len(line) > 12 && line[12] != ' ' || !msghead.Plain(line[12:]) {
		return false
	}
	code := string(line[9:12])
	return code != "204" && code != "304"
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
