package transform

import (
	"bytes"
	"io"
	"sort"
)

// chunk is how much a streaming transform reads from its source at a time.
const chunk = 32 << 10

// action says what a match of a needle does.
type action uint8

const (
	// replace puts repl in place of the needle.
	replace action = iota
	// trip stops the transform with a misuse error (a tripwire).
	trip
)

// needle is one byte string to find, and what to do with it.
type needle struct {
	find []byte
	repl []byte
	act  action
	// id is the caller's index (a binding, a tripwire or a secret).
	id int
}

// matcher finds the earliest of several needles, the longest one when two
// start at the same byte. It is immutable once built and safe for
// concurrent use.
type matcher struct {
	needles []needle // longest first
	maxLen  int
}

func newMatcher(ns []needle) *matcher {
	m := &matcher{}
	seen := map[string]bool{}
	for _, n := range ns {
		if len(n.find) == 0 || seen[string(n.find)] {
			continue
		}
		seen[string(n.find)] = true
		m.needles = append(m.needles, n)
		m.maxLen = max(m.maxLen, len(n.find))
	}
	sort.SliceStable(m.needles, func(i, j int) bool { return len(m.needles[i].find) > len(m.needles[j].find) })
	return m
}

// empty reports whether m finds nothing.
func (m *matcher) empty() bool { return m == nil || len(m.needles) == 0 }

// first returns the start and needle index of the earliest match in b, or
// -1.
func (m *matcher) first(b []byte) (at, which int) {
	at, which = -1, -1
	for i := range m.needles {
		hay := b
		if at >= 0 {
			// A later needle only wins by starting earlier (it is no
			// longer), so search only up to where the best one ends.
			hay = b[:min(len(b), at+len(m.needles[i].find)-1)]
		}
		if j := bytes.Index(hay, m.needles[i].find); j >= 0 && (at < 0 || j < at) {
			at, which = j, i
		}
	}
	return at, which
}

// hit is what a transform reports for each match.
type hit func(n *needle) error

// apply rewrites b whole (a header value, a path, a query, a frame),
// calling onHit for each match; it returns b itself when nothing matched.
func (m *matcher) apply(b []byte, onHit hit) ([]byte, error) {
	if m.empty() {
		return b, nil
	}
	var out []byte
	rest := b
	for {
		at, w := m.first(rest)
		if at < 0 {
			break
		}
		n := &m.needles[w]
		if err := onHit(n); err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]byte, 0, len(b)+len(n.repl))
		}
		out = append(out, rest[:at]...)
		out = append(out, n.repl...)
		rest = rest[at+len(n.find):]
	}
	if out == nil {
		return b, nil
	}
	return append(out, rest...), nil
}

// streamReader applies a matcher to a stream. It holds back at most the
// longest needle minus one byte (a match may still start there), so
// memory stays bounded by one chunk plus that look-behind whatever the
// body's size, and a needle split across the source's reads is found.
type streamReader struct {
	src   io.Reader
	m     *matcher
	onHit hit
	// atEOF, if set, runs once when src is exhausted, before EOF is
	// returned (trailers are scrubbed there); an error it returns is
	// returned instead of EOF.
	atEOF func() error

	buf  []byte
	r, w int   // buf[r:w] is read but not yet emitted
	pos  []int // per needle: next start in buf at or after r, -1 none in buf[r:w], -2 unknown
	out  []byte
	repl []byte // emitted after out
	eof  bool
	err  error // sticky
}

func newStreamReader(src io.Reader, m *matcher, onHit hit) *streamReader {
	s := &streamReader{src: src, m: m, onHit: onHit}
	s.buf = make([]byte, chunk+m.maxLen)
	s.pos = make([]int, len(m.needles))
	s.invalidate()
	return s
}

func (s *streamReader) invalidate() {
	for i := range s.pos {
		s.pos[i] = -2
	}
}

// next returns the earliest match starting in buf[r:w], or -1.
func (s *streamReader) next() (at, which int) {
	at, which = -1, -1
	for i := range s.m.needles {
		p := s.pos[i]
		if p == -2 || (p >= 0 && p < s.r) {
			p = -1
			if j := bytes.Index(s.buf[s.r:s.w], s.m.needles[i].find); j >= 0 {
				p = s.r + j
			}
			s.pos[i] = p
		}
		if p >= 0 && (at < 0 || p < at) {
			at, which = p, i
		}
	}
	return at, which
}

// Read implements io.Reader.
func (s *streamReader) Read(p []byte) (int, error) {
	for {
		if len(s.out) > 0 {
			n := copy(p, s.out)
			s.out = s.out[n:]
			return n, nil
		}
		if len(s.repl) > 0 {
			n := copy(p, s.repl)
			s.repl = s.repl[n:]
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.r < s.w {
			limit := s.w
			if !s.eof {
				limit = s.w - (s.m.maxLen - 1)
			}
			if limit > s.r {
				at, w := s.next()
				if at >= 0 && at < limit {
					n := &s.m.needles[w]
					if err := s.onHit(n); err != nil {
						s.err = err
						return 0, err
					}
					s.out = s.buf[s.r:at]
					s.repl = n.repl
					s.r = at + len(n.find)
					continue
				}
				s.out = s.buf[s.r:limit]
				s.r = limit
				continue
			}
		}
		if s.eof {
			s.err = io.EOF
			if s.atEOF != nil {
				if err := s.atEOF(); err != nil {
					s.err = err
				}
			}
			continue
		}
		s.fill()
	}
}

// fill moves the held-back bytes to the front and reads more.
func (s *streamReader) fill() {
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	n, err := s.src.Read(s.buf[s.w:])
	s.w += n
	if n > 0 {
		s.invalidate()
	}
	if err == io.EOF {
		s.eof = true
		s.invalidate()
	} else if err != nil {
		s.eof = true
		s.err = err
		// Emit nothing more: a body that failed is not to be completed
		// with bytes held back unchecked.
		s.r = s.w
	}
}

// Close closes the source when it is an io.Closer.
func (s *streamReader) Close() error {
	if c, ok := s.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
