package h1

import "bytes"

// framingScan notes whether a request's header block has a
// Content-Length field and a Transfer-Encoding field, from its bytes as
// they are read. http.ReadRequest leaves no trace of the pair: with
// Transfer-Encoding: chunked it frames the body by the chunks and
// deletes Content-Length, and it deletes Transfer-Encoding itself. RFC
// 9112 §6.1 asks a server that processes such a request by its
// Transfer-Encoding to close the connection after responding, since an
// intermediary in front of it may have framed the request by its
// Content-Length (request smuggling).
//
// It notes a Host field too: http.ReadRequest deletes it from the
// header and, for an absolute-form request, takes req.Host from the
// target, so that a request without the field (400, RFC 9112 §3.2) looks
// like one with it.
//
// It looks only at the start of each line, up to the blank line that
// ends the header block; Go's header parser refuses a field name with
// white space before its colon, so a field it reads as Content-Length
// or Transfer-Encoding starts its line with that name and a colon
// (continuation lines start with white space).
type framingScan struct {
	// cl, te and host: the header block has the field.
	cl, te, host bool
	// done: the blank line after the header block was seen.
	done bool
	// skip: the rest of the current line does not matter.
	skip bool
	// line holds the first n bytes of the current line.
	line [len(teField)]byte
	n    int
}

const (
	clField   = "content-length:"
	teField   = "transfer-encoding:"
	hostField = "host:"
)

// reset readies s for the next request's header block.
func (s *framingScan) reset() { *s = framingScan{} }

// both reports whether the header block had both fields.
func (s *framingScan) both() bool { return s.cl && s.te }

// feed scans p, the next bytes of the header block (and maybe of what
// follows it, which is ignored).
func (s *framingScan) feed(p []byte) {
	for len(p) > 0 && !s.done {
		if s.skip {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return
			}
			p = p[i+1:]
			s.skip, s.n = false, 0
			continue
		}
		c := p[0]
		p = p[1:]
		if c == '\n' {
			// An empty line (LF or CRLF) ends the header block.
			s.done = s.n == 0 || s.n == 1 && s.line[0] == '\r'
			s.n = 0
			continue
		}
		if s.n == 0 && c != 'c' && c != 'C' && c != 't' && c != 'T' && c != 'h' && c != 'H' && c != '\r' {
			s.skip = true // most lines: no byte copied
			continue
		}
		s.line[s.n] = c
		s.n++
		switch {
		case s.n == len(clField) && foldEqual(s.line[:s.n], clField):
			s.cl, s.skip = true, true
		case s.n == len(teField) && foldEqual(s.line[:s.n], teField):
			s.te, s.skip = true, true
		case s.n == len(hostField) && foldEqual(s.line[:s.n], hostField):
			s.host, s.skip = true, true
		case s.n == len(s.line):
			s.skip = true
		}
	}
}

// foldEqual reports whether b is lower, ignoring the case of ASCII
// letters; lower is lower-case.
func foldEqual(b []byte, lower string) bool {
	for i := range len(lower) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
