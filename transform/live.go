package transform

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// A Table is a stack of Scrubbers run one after the other over the same
// text, published as one (the gateway's table of every credential it
// holds: a combined table and the layer of the credentials added since
// it was built). A body scrubbed by a Table that follows a Tables
// (Table.TransformResponse, Table.Reader) takes up the table published
// there while it streams, whole stack at once, at a defined cut-over:
//
// The reader looks for a new table (one atomic load and a pointer
// comparison) at the start of every Read and before it decides more of
// the body (before and after each read from its source). The cut-over
// is the first byte it has not passed on yet — what earlier Reads
// returned cannot be recalled — moved forward to the end of any
// redaction it would split (a form of a secret whose first bytes were
// passed on as the marker keeps the rest of its marker, so no part of
// it is passed on in the clear). From the cut-over on, the body is
// scrubbed by the new table exactly as a body that began there would
// be: the bytes held back between reads (the end of what arrived that
// may begin a form), and those the reader had decided but not passed
// on, are read again as they came from the source, and the held-back
// window grows to the new table's longest forms. A secret that began
// before the cut-over and was partly passed on in the clear cannot be
// recalled; the new table does not recognise its remainder either
// (TestLiveSwapDifferential).
//
// A Table is immutable and safe for concurrent use. Each of its
// Scrubbers must keep lengths (ScrubOptions.KeepLength): the reader
// rewrites its buffer in place, which is what lets it read the bytes it
// has not passed on again as they came.
type Table struct {
	stages []*Scrubber
	// maxLen is the sum of the stages' longest forms: what the reader
	// may hold back at most, plus one byte per stage.
	maxLen int
}

// errNotKeepLength is NewTable's error for a Scrubber that changes lengths.
var errNotKeepLength = errors.New("transform: a Table's Scrubbers must keep lengths (ScrubOptions.KeepLength), which a scrubber of this table does not; build it with KeepLength")

// NewTable returns the Table that runs each of ss in turn (nil ones, and
// ones that redact nothing, skipped). Every Scrubber that redacts
// something must have been built with ScrubOptions.KeepLength.
func NewTable(ss ...*Scrubber) (*Table, error) {
	t := &Table{}
	for _, s := range ss {
		if s == nil || s.m.empty() {
			continue
		}
		if !s.keepLen {
			return nil, errNotKeepLength
		}
		t.stages = append(t.stages, s)
		t.maxLen += s.m.maxLen
	}
	return t, nil
}

// Bytes returns b with each stage applied to the whole of it in turn,
// and how many occurrences were redacted.
func (t *Table) Bytes(b []byte) ([]byte, int) {
	total := 0
	for _, s := range t.stages {
		var n int
		b, n = s.Bytes(b)
		total += n
	}
	return b, total
}

// Header redacts every value of h in place with each stage in turn and
// returns how many occurrences it redacted.
func (t *Table) Header(h http.Header) int {
	n := 0
	for _, s := range t.stages {
		n += s.Header(h)
	}
	return n
}

// Tables publishes the Table that readers following it use: Store makes
// every reader take it up at its next read. The zero value holds none.
type Tables struct{ p atomic.Pointer[Table] }

// Store publishes t.
func (ts *Tables) Store(t *Table) { ts.p.Store(t) }

// Load returns the Table published last, or nil.
func (ts *Tables) Load() *Table { return ts.p.Load() }

// Reader wraps r so that every form of t's secrets is redacted from what
// is read, counting into c, taking up each Table follow publishes while
// it reads (see Table; follow nil: t throughout). Close closes r when it
// is an io.Closer.
func (t *Table) Reader(r io.Reader, c *ScrubCount, follow *Tables) io.ReadCloser {
	if c == nil {
		c = &ScrubCount{}
	}
	if len(t.stages) == 0 && follow == nil {
		return readCloser(r)
	}
	l := &liveReader{}
	l.init(r, t, follow, c, -1)
	return l
}

// TransformResponse is Scrubber.TransformResponse for a Table whose body
// takes up each Table follow publishes while it streams (see Table).
// Headers are scrubbed by t now, the body from its first byte by the
// table published when it is first read, the trailers by the one in use
// when the body ends. An unencoded body keeps its Content-Length (every
// stage keeps lengths); an encoded one is decoded first, or refused with
// ErrUnsupportedEncoding, the body left untouched.
func (t *Table) TransformResponse(resp *http.Response, follow *Tables) (*ScrubCount, error) {
	if len(t.stages) == 0 && follow == nil {
		return &ScrubCount{}, nil
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		c := &ScrubCount{}
		c.n.Add(int64(t.Header(resp.Header)))
		c.n.Add(int64(t.Header(resp.Trailer)))
		return c, nil
	}
	lb := &liveBody{bodyEnds: bodyEnds{resp: resp, raw: resp.Body}}
	lb.c.n.Add(int64(t.Header(resp.Header)))
	lb.body = readCloser(lb.raw)
	expect := resp.ContentLength
	if len(resp.Header.Values("Content-Encoding")) > 0 {
		var err error
		if lb.body, err = decodeResponse(resp); err != nil {
			return &lb.c, err
		}
		expect = -1
	}
	lb.buf = lb.small[:0]
	lb.init(lb.body, t, follow, &lb.c, expect)
	if grpcFramed(resp.Header) {
		lb.frames = &grpcFrames{}
	}
	lb.atEOF = lb
	resp.Body = lb
	return &lb.c, nil
}

// ender is what a liveReader runs at the end of its source.
type ender interface{ end() error }

// liveBody is a response body Table.TransformResponse scrubs.
type liveBody struct {
	liveReader
	bodyEnds
	// small is buf's first backing array, for a body of a few hundred
	// bytes and its look-behind: part of the body's allocation, which is
	// this response's alone.
	small [512]byte
}

// end scrubs the trailers with the table in use when the body ended.
func (b *liveBody) end() error {
	if err := b.drain(); err != nil {
		return err
	}
	b.c.n.Add(int64(b.table.Header(b.resp.Trailer)))
	return nil
}

// Close closes the decoder, if any, and the raw body.
func (b *liveBody) Close() error { return b.bodyEnds.Close() }

// liveReader applies a Table's stages to a stream, in place in one
// buffer, and takes up a new Table at the cut-over (see Table).
//
// buf[:e] was passed on; buf[e:w] was read and not passed on. Stage i
// has decided buf[:stages[i].r] of its input, which is stage i-1's
// output (the source's bytes for stage 0): stages[i].r <= stages[i-1].r,
// and buf[e:stages[last].r] is ready to pass on. A match is replaced in
// place (the replacement has its length); when the reader follows a
// Tables, each replacement is recorded (spans) so that the bytes not
// passed on can be put back as they came at a cut-over.
type liveReader struct {
	src    io.Reader
	follow *Tables
	table  *Table
	stages []liveStage
	stage2 [2]liveStage // stages' backing array for tables of 1 or 2 stages
	hits   *ScrubCount
	// atEOF, if set, is what runs once when src is exhausted, before EOF
	// is returned (its end); an error it returns is returned instead of
	// EOF. An interface rather than a func (streamReader's), so that
	// liveBody sets itself without allocating a method value per body.
	atEOF ender
	// frames, when set, follows a gRPC body's messages (streamReader).
	frames *grpcFrames

	buf    []byte
	e, w   int
	size   int // buf holds size plus the table's maxLen
	eof    bool
	err    error // sticky
	grow   bool
	expect int64
	total  int64
	// spans are the replacements made in buf[e:] (and any ending after
	// e), oldest first; recorded only when following a Tables.
	spans []liveSpan
	// off is the stream offset of buf[0]; cut is the stream offset of
	// the last cut-over (-1: none; tests).
	off, cut int64
}

// liveStage is one stage of a liveReader.
type liveStage struct {
	m *matcher
	r int
	// seen is the end of the input the stage was last run on and final
	// whether that input was complete: a stage whose input did not change
	// is not searched again.
	seen      int
	seenFinal bool
	// scanOnly: streamReader.scanOnly.
	scanOnly uint8
}

// liveSpan is a replacement made at buf[at:at+len(n.find)].
type liveSpan struct {
	at int
	n  *needle
}

func (s *liveReader) init(src io.Reader, t *Table, follow *Tables, hits *ScrubCount, expect int64) {
	s.src, s.follow, s.hits, s.expect, s.cut = src, follow, hits, expect, -1
	s.size = firstChunk
	if expect >= 0 && expect < firstChunk {
		s.size = int(expect) + 1
	}
	if follow != nil {
		if cur := follow.Load(); cur != nil {
			t = cur
		}
	}
	s.setTable(t, 0)
}

// setTable makes t's stages the reader's, each having decided buf[:at],
// and grows buf to hold t's look-behind.
func (s *liveReader) setTable(t *Table, at int) {
	s.table = t
	s.stages = s.stage2[:0]
	for _, sc := range t.stages {
		s.stages = append(s.stages, liveStage{m: sc.m, r: at, seen: -1})
	}
	if need := s.size + t.maxLen; need <= cap(s.buf) && len(s.buf) < need {
		s.buf = s.buf[:need] // the bytes held stay where they are
	} else if len(s.buf) < need {
		b := make([]byte, need)
		copy(b, s.buf[:s.w])
		s.buf = b
	}
}

// ready is the end of what is ready to pass on.
func (s *liveReader) ready() int {
	if len(s.stages) == 0 {
		return s.w
	}
	return s.stages[len(s.stages)-1].r
}

// check takes up the Table published now, when it is another: one atomic
// load and a comparison when it is not.
func (s *liveReader) check() {
	if s.follow == nil {
		return
	}
	if t := s.follow.p.Load(); t != nil && t != s.table {
		s.swap(t)
	}
}

// swap puts t in place of the reader's table at the cut-over (Table).
func (s *liveReader) swap(t *Table) {
	c := s.e
	for moved := true; moved; {
		moved = false
		for _, sp := range s.spans {
			if end := sp.at + len(sp.n.find); sp.at < c && c < end {
				c, moved = end, true
			}
		}
	}
	// Undo the replacements from c on, the latest first: each puts back
	// what its stage read.
	keep := 0
	for i := len(s.spans) - 1; i >= 0; i-- {
		if sp := s.spans[i]; sp.at >= c {
			copy(s.buf[sp.at:], sp.n.find)
			s.hits.n.Add(-1)
		}
	}
	for _, sp := range s.spans {
		if sp.at < c {
			s.spans[keep] = sp
			keep++
		}
	}
	clear(s.spans[keep:])
	s.spans = s.spans[:keep]
	s.cut = s.off + int64(c)
	s.setTable(t, c)
}

// Read implements io.Reader as streamReader.Read does.
func (s *liveReader) Read(p []byte) (int, error) {
	if s.err == nil {
		s.check()
	}
	n := 0
	for n < len(p) {
		if r := s.ready(); s.e < r {
			c := copy(p[n:], s.buf[s.e:r])
			s.e += c
			n += c
			continue
		}
		if s.err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, s.err
		}
		if !s.advance(n == 0) {
			return n, nil
		}
	}
	return n, nil
}

// ReadChunk is streamReader.ReadChunk: it returns what is ready as a
// stretch of the reader's buffer, valid until the next call of
// ReadChunk, Read or Close.
func (s *liveReader) ReadChunk(p []byte) ([]byte, error) {
	if s.err == nil {
		s.check()
		if s.e == s.ready() {
			s.advance(true)
		}
	}
	if r := s.ready(); s.e < r {
		out := s.buf[s.e:r]
		s.e = r
		return out, nil
	}
	n, err := s.Read(p)
	return p[:n], err
}

// advance runs the stages until something is ready to pass on, or sets
// err; it reads src when nothing is ready and fill is set, and reports
// false, with nothing ready, when it would have to read src and fill is
// not set.
func (s *liveReader) advance(fill bool) bool {
	for {
		s.check()
		for i := range s.stages {
			s.step(i)
		}
		if s.e < s.ready() {
			return true
		}
		if s.eof {
			var end func() error
			if s.atEOF != nil {
				end = s.atEOF.end // does not escape: no allocation
			}
			s.err = endOfStream(s.frames, end)
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

// step decides as much of stage i's input as can be decided.
func (s *liveReader) step(i int) {
	st := &s.stages[i]
	avail := s.w
	if i > 0 {
		avail = s.stages[i-1].r
	}
	final := s.eof && avail == s.w
	if avail == st.seen && final == st.seenFinal {
		return
	}
	st.seen, st.seenFinal = avail, final
	for st.r < avail {
		limit := avail
		if !final {
			limit -= s.holdBack(st.m, st.r, avail)
		}
		if limit <= st.r {
			return
		}
		at, which := s.search(st, avail)
		if at < 0 || at >= limit {
			st.r = limit
			return
		}
		nd := &st.m.needles[which]
		copy(s.buf[at:], nd.repl)
		if s.follow != nil {
			s.spans = append(s.spans, liveSpan{at: at, n: nd})
		}
		s.hits.n.Add(1)
		st.r = at + len(nd.find)
	}
}

// search returns the earliest match in buf[st.r:avail], or -1.
func (s *liveReader) search(st *liveStage, avail int) (at, which int) {
	b := s.buf[st.r:avail]
	if st.m.pf != nil && st.scanOnly == 0 {
		var gaveWay bool
		at, which, gaveWay = st.m.prefiltered(b)
		if gaveWay {
			st.scanOnly = prefilterPause
		}
	} else {
		at, which = st.m.scan(b)
	}
	if at < 0 {
		return -1, -1
	}
	return st.r + at, which
}

// holdBack is streamReader.holdBack for buf[from:to] under m.
func (s *liveReader) holdBack(m *matcher, from, to int) int {
	n := m.holdBack(s.buf[from:to])
	if n > 0 && s.frames != nil && !m.spansFrames && to == s.w && s.frames.atBoundary() {
		s.frames.released = true
		return 0
	}
	return n
}

// fill moves what was not passed on to the front and reads more.
func (s *liveReader) fill() {
	if d := s.e; d > 0 {
		s.w = copy(s.buf, s.buf[d:s.w])
		s.e = 0
		s.off += int64(d)
		for i := range s.stages {
			st := &s.stages[i]
			st.r -= d
			if st.seen >= 0 {
				st.seen -= d
			}
		}
		keep := 0
		for _, sp := range s.spans {
			// A replacement ending after e stays (a cut-over must
			// not split it); it may begin before buf[0] now.
			if sp.at+len(sp.n.find) > d {
				sp.at -= d
				s.spans[keep] = sp
				keep++
			}
		}
		clear(s.spans[keep:])
		s.spans = s.spans[:keep]
	}
	if full := chunk + s.table.maxLen; s.grow && len(s.buf) < full {
		b := make([]byte, full)
		s.w = copy(b, s.buf[:s.w])
		s.buf = b
		s.size = chunk
	}
	n, err := s.src.Read(s.buf[s.w:])
	if s.frames != nil {
		if ok, ferr := s.frames.feed(s.buf[s.w : s.w+n]); ferr != nil {
			n, err = ok, io.EOF
			s.frames.err = ferr
		}
	}
	s.total += int64(n)
	sized := s.expect >= 0 && s.expect < firstChunk && s.total <= s.expect
	s.grow = n > (len(s.buf)-s.w)/2 && !sized
	s.w += n
	for i := range s.stages {
		if s.stages[i].scanOnly > 0 {
			s.stages[i].scanOnly--
		}
	}
	if err == io.EOF {
		s.eof = true
	} else if err != nil {
		s.eof = true
		s.err = err
		// Pass nothing more on: a body that failed is not completed
		// with bytes held back unchecked.
		s.e = s.w
		for i := range s.stages {
			s.stages[i].r = s.w
		}
	}
}

// Close closes the source when it is an io.Closer.
func (s *liveReader) Close() error {
	if c, ok := s.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
