package transform

import (
	"bytes"
	"io"
	"slices"
	"sync"
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
//
// It searches first with a prefilter (prefilter.go) when a few bytes
// rare in HTTP bodies cover every needle: bytes.IndexByte, vectorised by
// the runtime, skips the text between their occurrences, and the needles
// are compared only at those. Otherwise, and for the rest of a text where
// the prefilter's candidates fail too often, with Wu-Manber: a window of
// the shortest needle's length slides over the text by the shift its
// last two bytes allow, so text that resembles no needle is skipped
// several bytes at a time, and the needles are compared only where a
// window's last two bytes end the prefix of one of them.
type matcher struct {
	needles []needle // longest first
	maxLen  int
	minLen  int
	// wm is the Wu-Manber table, built on first use (a matcher whose
	// prefilter every text suits never needs it); wmOnce guards it.
	wm     *wuManberTable
	wmOnce sync.Once
	// starts marks the bytes some needle starts with: only from one of
	// them can the end of a stream's buffer begin a needle (holdBack).
	starts [256]bool
	// pf, when set, finds candidates first (prefiltered).
	pf *prefilter
	// sorted, for a matcher of more than manyNeedles needles, holds the
	// needles in byte order: whether an end of a text begins some needle
	// (holdBack) is then one binary search, not a comparison with each.
	sorted [][]byte
	// spansFrames is set when some needle has, after its first byte, a
	// byte a gRPC message's prefix begins with (grpcFlag): only such a
	// needle could continue from one message into the next, so without
	// one nothing is held back at a message's end (grpcFrames).
	spansFrames bool
}

// wuManberTable is what Wu-Manber needs of a matcher's needles.
type wuManberTable struct {
	// shift is, for the hash of two bytes, how far the window may move
	// when they are its last two; 0 marks a candidate.
	shift [shiftSize]uint8
	// last is each needle's hash of bytes minLen-2 and minLen-1.
	last []uint16
	// For a matcher of more than manyNeedles needles, byLast lists the
	// needles' indexes ordered by last (longest first among equal hashes),
	// and lastSorted their hashes in that order: a candidate window is
	// compared with the needles of its hash alone, found by binary search,
	// not with every needle (a secret scan of hundreds of values and
	// their encoded forms, over text dense in hex).
	byLast     []int32
	lastSorted []uint16
	// top is the longest shift: the shortest needle's length minus one,
	// at most 255, what a window whose last two bytes end no needle's
	// prefix moves by.
	top int
}

// skip returns the end of the first window at or after pos (which must
// be 1 or more) whose last two bytes have a shift of 0, or len(b) or more
// when there is none. Where text resembles no needle (random or binary
// bytes, most of any body) nearly every shift is top, and the loop
// moves by top as a branch the processor predicts, not by the shift it
// loaded: the next window's bytes and shift are loaded while this one's
// are, instead of after them (pos += sh made each step wait for the
// last one's loads: BenchmarkMatcherSearch/forms-binary/scan is about
// four times faster this way, forms/scan over JSON three times;
// docs/performance.md, "Large downloads, fifth session").
func (t *wuManberTable) skip(b []byte, pos int) int {
	top := t.top
	for pos < len(b) {
		sh := int(t.shift[blockHash(b[pos-1], b[pos])])
		if sh == top {
			pos += top
			continue
		}
		if sh == 0 {
			return pos
		}
		pos += sh
	}
	return pos
}

// manyNeedles is how many needles a matcher compares one by one at a
// candidate window; above it, it looks them up by hash.
const manyNeedles = 16

// shiftSize is the size of the Wu-Manber shift table (hashes of two
// bytes; a collision only shortens a shift).
const shiftSize = 1 << 14

func blockHash(a, b byte) uint16 { return (uint16(a)<<7 ^ uint16(b)) & (shiftSize - 1) }

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
	// slices.SortStableFunc, not sort.SliceStable: the combined table of
	// 1,000 credentials' forms spent a fifth of its build in the
	// reflection-based swaps of the latter.
	slices.SortStableFunc(m.needles, func(a, b needle) int { return len(b.find) - len(a.find) })
	for _, n := range m.needles {
		m.starts[n.find[0]] = true
		for _, b := range n.find[1:] {
			m.spansFrames = m.spansFrames || grpcFlag(b)
		}
	}
	if len(m.needles) == 0 {
		return m
	}
	m.minLen = len(m.needles[len(m.needles)-1].find)
	m.pf = newPrefilter(m.needles)
	if len(m.needles) > manyNeedles {
		for _, n := range m.needles {
			m.sorted = append(m.sorted, n.find)
		}
		slices.SortFunc(m.sorted, bytes.Compare)
	}
	return m
}

// table returns m's Wu-Manber table, building it on first use; m.minLen
// must be 2 or more.
func (m *matcher) table() *wuManberTable {
	m.wmOnce.Do(func() {
		t := &wuManberTable{}
		top := min(m.minLen-1, 255)
		t.top = top
		for i := range t.shift {
			t.shift[i] = uint8(top)
		}
		for _, n := range m.needles {
			p := n.find[:m.minLen]
			for q := 1; q < len(p); q++ {
				h := blockHash(p[q-1], p[q])
				t.shift[h] = min(t.shift[h], uint8(min(len(p)-1-q, 255)))
			}
			t.last = append(t.last, blockHash(p[len(p)-2], p[len(p)-1]))
		}
		if len(m.needles) > manyNeedles {
			t.byLast = make([]int32, len(m.needles))
			for i := range t.byLast {
				t.byLast[i] = int32(i)
			}
			slices.SortStableFunc(t.byLast, func(i, j int32) int { return int(t.last[i]) - int(t.last[j]) })
			t.lastSorted = make([]uint16, len(t.byLast))
			for k, i := range t.byLast {
				t.lastSorted[k] = t.last[i]
			}
		}
		m.wm = t
	})
	return m.wm
}

// empty reports whether m finds nothing.
func (m *matcher) empty() bool { return m == nil || len(m.needles) == 0 }

// first returns the start and needle index of the earliest match in b
// (the longest needle of those starting there), or -1.
func (m *matcher) first(b []byte) (at, which int) {
	if m.pf != nil {
		at, which, _ = m.prefiltered(b)
		return at, which
	}
	return m.scan(b)
}

// scan is first without the prefilter: Wu-Manber, or bytes.Index for
// each needle when one is a single byte.
func (m *matcher) scan(b []byte) (at, which int) {
	if m.minLen >= 2 {
		return m.wuManber(b)
	}
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

// wuManber is first for needles of two bytes or more.
func (m *matcher) wuManber(b []byte) (at, which int) {
	t := m.table()
	for pos := m.minLen - 1; ; {
		if pos = t.skip(b, pos); pos >= len(b) {
			break
		}
		h := blockHash(b[pos-1], b[pos])
		start := pos - m.minLen + 1
		if t.byLast != nil {
			// Every needle matching at start has hash h; those are
			// listed longest first.
			k, _ := slices.BinarySearch(t.lastSorted, h)
			for ; k < len(t.lastSorted) && t.lastSorted[k] == h; k++ {
				if i := int(t.byLast[k]); bytes.HasPrefix(b[start:], m.needles[i].find) {
					return start, i
				}
			}
			pos++
			continue
		}
		for i, n := range m.needles { // longest first
			if t.last[i] == h && bytes.HasPrefix(b[start:], n.find) {
				return start, i
			}
		}
		pos++
	}
	return -1, -1
}

// holdBack returns how many bytes at the end of b must wait for more
// input: the longest end of b (shorter than the longest needle) that
// begins some needle. Text that could not begin a needle is never held,
// so a stream that pauses (server-sent events, a long poll) gets all
// of what arrived.
func (m *matcher) holdBack(b []byte) int {
	from := max(0, len(b)-(m.maxLen-1))
	for p := from; p < len(b); p++ {
		if !m.starts[b[p]] {
			continue
		}
		if m.begins(b[p:]) {
			return len(b) - p
		}
	}
	return 0
}

// begins reports whether tail is the beginning of some needle.
func (m *matcher) begins(tail []byte) bool {
	if m.sorted != nil {
		// The needles that begin with tail sort together, from the first
		// needle not below tail.
		k, _ := slices.BinarySearchFunc(m.sorted, tail, bytes.Compare)
		return k < len(m.sorted) && bytes.HasPrefix(m.sorted[k], tail)
	}
	for i := range m.needles {
		if bytes.HasPrefix(m.needles[i].find, tail) {
			return true
		}
	}
	return false
}

// hit is what a transform reports for each match.
type hit func(n *needle) error

// apply rewrites b whole (a header value, a path, a query, a frame),
// calling onHit for each match; it returns b itself when nothing matched.
func (m *matcher) apply(b []byte, onHit hit) ([]byte, error) {
	return m.applyAt(b, onHit, nil)
}

// applyAt is apply that, when at is not nil, sets *at to the offset in b
// of each match before calling onHit (which may read it to tell the
// field the match is in).
func (m *matcher) applyAt(b []byte, onHit hit, at *int) ([]byte, error) {
	if m.empty() {
		return b, nil
	}
	var out []byte
	rest := b
	for {
		i, w := m.first(rest)
		if i < 0 {
			break
		}
		n := &m.needles[w]
		if at != nil {
			*at = len(b) - len(rest) + i
		}
		if err := onHit(n); err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]byte, 0, len(b)+len(n.repl))
		}
		out = append(out, rest[:i]...)
		out = append(out, n.repl...)
		rest = rest[i+len(n.find):]
	}
	if out == nil {
		return b, nil
	}
	return append(out, rest...), nil
}

// streamReader applies a matcher to a stream. It holds back at most the
// longest needle minus one byte — only an end of what it read that
// begins a needle (matcher.holdBack), where a match may still start — so
// memory stays bounded by one chunk plus that look-behind whatever the
// body's size, and a needle split across the source's reads is found.
type streamReader struct {
	src   io.Reader
	m     *matcher
	onHit hit
	// hits, when set, counts the matches instead of onHit.
	hits *ScrubCount
	// atEOF, if set, runs once when src is exhausted, before EOF is
	// returned (trailers are scrubbed there); an error it returns is
	// returned instead of EOF.
	atEOF func() error

	buf  []byte
	r, w int // buf[r:w] is read but not yet emitted
	// found is the start of the next match in buf at or after r, w when
	// there is none before w, or -1 when unknown; foundWhich is its needle.
	found, foundWhich int
	out               []byte
	repl              []byte // emitted after out
	eof               bool
	err               error // sticky
	// grow is set when a read filled more than half of the free space:
	// the next fill reads into a full chunk (buf starts at firstChunk).
	grow bool
	// scanOnly is how many more fills are searched with Wu-Manber alone
	// (matcher.scan): the prefilter gave way in this stream, whose next
	// reads (a binary body's) would most likely make it give way again
	// after as long a search of its own. (A uint8 beside the bools: the
	// struct keeps its size.)
	scanOnly uint8
	// expect is the length src announced (-1: unknown) and total what
	// was read of it: a buffer sized for a whole small announced body
	// (under firstChunk) does not grow unless src turns out longer.
	expect, total int64
	// frames, when set, follows the messages of a gRPC body, so that
	// what arrived is not held back at the end of a message (where a
	// stream pauses until the other side answers) when no needle can
	// continue into the next.
	frames *grpcFrames
}

// prefilterPause is how many fills a stream searches with Wu-Manber alone
// after the prefilter gave way in one (about 1–2 MiB of a large body),
// before the prefilter is tried again: a body that turns to text after
// binary bytes (a multipart upload's parts) gets the prefilter back.
const prefilterPause = 64

// firstChunk is what a streamReader reads into at first; it grows to chunk
// once a read fills more than half of the free space. Most API bodies are small: a
// 32 KiB buffer per response was the largest allocation of a request.
const firstChunk = 4 << 10

func newStreamReader(src io.Reader, m *matcher, onHit hit) *streamReader {
	return newStreamReaderSized(src, m, onHit, -1)
}

// newStreamReaderSized is newStreamReader for a src that announced its
// length, expect (-1: unknown). A body shorter than firstChunk gets a
// buffer of its length plus the look-behind and one byte to read the end
// into: a 100-byte API answer costs a few hundred bytes, not 4 KiB
// cleared and collected per response. The length is a hint: a src longer
// than announced is still read whole, through a buffer that grows.
func newStreamReaderSized(src io.Reader, m *matcher, onHit hit, expect int64) *streamReader {
	s := &streamReader{}
	s.init(src, m, onHit, expect)
	return s
}

// init sets up a zero streamReader (one embedded in a larger value).
func (s *streamReader) init(src io.Reader, m *matcher, onHit hit, expect int64) {
	s.src, s.m, s.onHit, s.expect = src, m, onHit, expect
	size := firstChunk
	if expect >= 0 && expect < firstChunk {
		size = int(expect) + 1
	}
	s.buf = make([]byte, size+m.maxLen)
	s.found = -1
}

func (s *streamReader) invalidate() { s.found = -1 }

// next returns the earliest match starting in buf[r:w], or -1. A match
// found at or after the limit is remembered until the next fill, so the
// held-back bytes are not searched twice.
func (s *streamReader) next() (at, which int) {
	if s.found >= s.r {
		if s.found == s.w {
			return -1, -1
		}
		return s.found, s.foundWhich
	}
	if s.m.pf != nil && s.scanOnly == 0 {
		var gaveWay bool
		at, which, gaveWay = s.m.prefiltered(s.buf[s.r:s.w])
		if gaveWay {
			s.scanOnly = prefilterPause
		}
	} else {
		at, which = s.m.scan(s.buf[s.r:s.w])
	}
	if at < 0 {
		s.found = s.w // none before w
		return -1, -1
	}
	s.found, s.foundWhich = s.r+at, which
	return s.found, which
}

// Read implements io.Reader. It fills p with as much as is ready without
// reading src again (the bytes before a match, the replacement, the bytes
// after it), and reads src only when nothing is ready: a body with many
// matches is handed on in full reads, not one short read per match
// (each of which an HTTP/2 transport sends as a DATA frame of its own).
func (s *streamReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.out) > 0 {
			c := copy(p[n:], s.out)
			s.out = s.out[c:]
			n += c
			continue
		}
		if len(s.repl) > 0 {
			c := copy(p[n:], s.repl)
			s.repl = s.repl[c:]
			n += c
			continue
		}
		if s.err != nil {
			if n > 0 {
				return n, nil // the error comes with the next Read
			}
			return 0, s.err
		}
		if !s.advance(n == 0) {
			return n, nil // more would wait for src
		}
	}
	return n, nil
}

// ReadChunk is Read without the copy where it can do without: when the
// next bytes ready are a stretch of the source with no match in it (all
// of a body that holds no secret), it returns that stretch of its own
// buffer, which stays valid until the next call of ReadChunk, Read or
// Close and may be longer than p; otherwise (a match, a replacement to
// hand on) it reads into p as Read does and returns p[:n]. At the end of
// the body it returns the error Read would. A body copied to the client
// through ReadChunk is copied once, from the source's read into the
// reader's buffer, where Read copies it again.
func (s *streamReader) ReadChunk(p []byte) ([]byte, error) {
	if len(s.out) == 0 && len(s.repl) == 0 && s.err == nil {
		s.advance(true)
		if len(s.repl) == 0 && len(s.out) > 0 {
			out := s.out
			s.out = nil
			return out, nil
		}
	}
	n, err := s.Read(p)
	return p[:n], err
}

// advance makes the next bytes ready in out and repl, or sets err (the
// end of the body, a read error, an error of onHit). It reads src when
// nothing is ready and fill is set, and reports false, with nothing
// ready, when it would have to read src and fill is not set.
func (s *streamReader) advance(fill bool) bool {
	for {
		if s.r < s.w {
			limit := s.w
			if !s.eof {
				limit = s.w - s.holdBack()
			}
			if limit > s.r {
				at, w := s.next()
				if at >= 0 && at < limit {
					nd := &s.m.needles[w]
					if s.hits != nil {
						s.hits.n.Add(1)
					} else if err := s.onHit(nd); err != nil {
						s.err = err
						return true
					}
					s.out = s.buf[s.r:at]
					s.repl = nd.repl
					s.r = at + len(nd.find)
					return true
				}
				s.out = s.buf[s.r:limit]
				s.r = limit
				return true
			}
		}
		if s.eof {
			s.err = endOfStream(s.frames, s.atEOF)
			return true
		}
		if !fill {
			return false
		}
		s.fill()
		if s.err != nil {
			return true
		}
	}
}

// endOfStream is what a scrubbing reader (streamReader, liveReader)
// returns once its source is exhausted and everything before was passed
// on: a gRPC body's framing error (cut off, grpcFrames.feed: its trailers
// are not reached), else the error atEOF (when set) returns, else io.EOF.
func endOfStream(frames *grpcFrames, atEOF func() error) error {
	if frames != nil && frames.err != nil {
		return frames.err
	}
	if atEOF != nil {
		if err := atEOF(); err != nil {
			return err
		}
	}
	return io.EOF
}

// holdBack is how many bytes at the end of buf[r:w] wait for more input
// (matcher.holdBack), none at the end of a gRPC message that no needle
// can continue past.
func (s *streamReader) holdBack() int {
	n := s.m.holdBack(s.buf[s.r:s.w])
	if n > 0 && s.frames != nil && !s.m.spansFrames && s.frames.atBoundary() {
		s.frames.released = true
		return 0
	}
	return n
}

// fill moves the held-back bytes to the front and reads more.
func (s *streamReader) fill() {
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if full := chunk + s.m.maxLen; s.grow && len(s.buf) < full {
		// A body larger than the first reads: a chunk at a time.
		b := make([]byte, full)
		s.w = copy(b, s.buf[:s.w])
		s.buf = b
	}
	n, err := s.src.Read(s.buf[s.w:])
	if s.frames != nil {
		// What follows a compressed message's prefix, or bytes that
		// are no message after an end of a message at which bytes
		// that may begin a needle were passed on (they could complete
		// it), is not passed on.
		// The whole messages before it are passed on (scanned, as at
		// the end of a body), then the body ends with the error.
		if ok, ferr := s.frames.feed(s.buf[s.w : s.w+n]); ferr != nil {
			n, err = ok, io.EOF
			s.frames.err = ferr
		}
	}
	s.total += int64(n)
	// A buffer sized for a whole small announced body need not grow until
	// the body turns out longer; any other grows to a chunk once reads
	// fill it (a large announced body too: it is read a chunk at a time).
	sized := s.expect >= 0 && s.expect < firstChunk && s.total <= s.expect
	s.grow = n > (len(s.buf)-s.w)/2 && !sized
	s.w += n
	s.invalidate()
	if s.scanOnly > 0 {
		s.scanOnly--
	}
	if err == io.EOF {
		s.eof = true
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
