package batch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// parseMultipart reads a multipart/mixed batch of application/http parts,
// with OData's change sets (a multipart/mixed part of application/http
// parts) one level deep.
func parseMultipart(req Request) ([]Sub, error) {
	mt, params, err := mime.ParseMediaType(req.ContentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil, fail(-1, ErrMalformed, "its Content-Type is not multipart/mixed with a boundary, which the endpoint's batches are")
	}
	var subs []Sub
	if err := readParts(req, req.Body, params["boundary"], 0, &subs); err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		return nil, fail(-1, ErrMalformed, "its body has no application/http part")
	}
	return subs, nil
}

// readParts appends the requests of the parts of body to subs.
//
// Multipart parsers differ at the edges (a delimiter after a bare LF,
// transport padding after it, text before the first one), and a part the
// service finds where this reader found none would run unjudged. Every
// delimiter line holds "--" and the boundary, so the body may hold that
// string exactly where this reader used it: once per part and once to
// close. Anything more (the boundary in a preamble, an epilogue, a part's
// content, a delimiter this reader did not take) is refused.
func readParts(req Request, body []byte, boundary string, depth int, subs *[]Sub) error {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	delims := bytes.Count(body, []byte("--"+boundary))
	for parts := 0; ; parts++ {
		i := len(*subs)
		if i >= maxParts {
			return fail(-1, ErrTooMany, fmt.Sprintf("it has more than %d parts", maxParts))
		}
		// NextRawPart: NextPart would decode a quoted-printable part
		// itself, which the service may not.
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			if delims != parts+1 {
				return fail(-1, ErrMalformed, "its boundary appears in the body other than as the delimiter of a part (in a preamble, an epilogue, a part's content, or a delimiter line services read differently); choose a boundary its parts do not contain")
			}
			return nil
		}
		if err != nil {
			return fail(i, ErrMalformed, "its multipart body does not parse ("+err.Error()+")")
		}
		if cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte != "" && cte != "binary" && cte != "7bit" && cte != "8bit" {
			return fail(i, ErrMalformed, "a part has Content-Transfer-Encoding "+cte+"; send its request as is (binary)")
		}
		if len(p.Header.Values("Content-Type")) != 1 {
			return fail(i, ErrMalformed, "a part has no Content-Type, or more than one; each part must be application/http")
		}
		mt, params, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return fail(i, ErrMalformed, "a part's Content-Type does not parse")
		}
		b, err := io.ReadAll(io.LimitReader(p, MaxBody+1))
		if err != nil {
			return fail(i, ErrMalformed, "its multipart body does not parse ("+err.Error()+")")
		}
		switch {
		case mt == "application/http":
			s, err := readHTTP(req, i, b)
			if err != nil {
				return err
			}
			*subs = append(*subs, s)
		case strings.HasPrefix(mt, "multipart/") && depth == 0 && params["boundary"] != "":
			// An OData change set.
			if err := readParts(req, b, params["boundary"], 1, subs); err != nil {
				return err
			}
		case strings.HasPrefix(mt, "multipart/"):
			return fail(i, ErrMalformed, "a change set holds another multipart part; batches nest change sets one level deep")
		default:
			return fail(i, ErrMalformed, "a part is "+mt+", not application/http")
		}
	}
}

// readHTTP reads the request of an application/http part: a request line
// (Google's omit the HTTP version), header fields, an empty line and a
// body, which is not read.
func readHTTP(req Request, i int, b []byte) (Sub, error) {
	tp := textproto.NewReader(bufio.NewReaderSize(io.LimitReader(bytes.NewReader(b), maxPartHeader), 4096))
	var line string
	for k := 0; ; k++ {
		l, err := tp.ReadLine()
		if err != nil {
			return Sub{}, fail(i, ErrMalformed, "its part holds no request line")
		}
		if l != "" {
			line = l
			break
		}
		if k == 2 {
			return Sub{}, fail(i, ErrMalformed, "its part holds no request line")
		}
	}
	f := strings.Split(line, " ")
	if len(f) < 2 || len(f) > 3 || f[0] == "" || f[1] == "" || len(f) == 3 && !strings.HasPrefix(f[2], "HTTP/") {
		return Sub{}, fail(i, ErrMalformed, "its request line is not METHOD TARGET [HTTP/1.1]")
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return Sub{}, fail(i, ErrMalformed, "its header fields do not parse ("+err.Error()+")")
	}
	t, err := resolve(MultipartHTTP, req, i, f[1])
	if err != nil {
		return Sub{}, err
	}
	return Sub{Index: i, Method: f[0], Targets: t, Header: http.Header(h)}, nil
}
