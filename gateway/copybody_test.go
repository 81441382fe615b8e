package gateway

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// splitBody returns data in reads of the given sizes, cycling, then err
// (io.EOF when nil).
type splitBody struct {
	data  []byte
	sizes []int
	i     int
	err   error
}

func (s *splitBody) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		return 0, io.EOF
	}
	n := max(1, s.sizes[s.i%len(s.sizes)])
	s.i++
	n = min(n, len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

func (s *splitBody) Close() error { return nil }

// recordingWriter is a ResponseWriter that counts writes and flushes and
// fails every write once failAfter bytes were written (-1: never).
type recordingWriter struct {
	header  http.Header
	body    bytes.Buffer
	writes  int
	flushes int
	// bodyFlushes counts the flushes after a body write (the others
	// can only carry the headers).
	bodyFlushes int
	failAfter   int
}

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) WriteHeader(int)     {}
func (w *recordingWriter) Flush() {
	w.flushes++
	if w.writes > 0 {
		w.bodyFlushes++
	}
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.failAfter >= 0 && w.body.Len()+len(p) > w.failAfter {
		return 0, errors.New("client went away")
	}
	w.writes++
	return w.body.Write(p)
}

// scrubbedResponse returns a response whose body, data in reads of the
// given sizes, is scrubbed of scrubSecret as the gateway scrubs it.
func scrubbedResponse(t *testing.T, data []byte, sizes []int, cl int64, err error) (*http.Response, *transform.ScrubCount) {
	t.Helper()
	s := transform.NewScrubber([]secret.Value{secret.New(scrubSecret)}, transform.ScrubOptions{KeepLength: true})
	resp := &http.Response{Header: http.Header{}, ContentLength: cl, Body: &splitBody{data: data, sizes: sizes, err: err}}
	c, terr := s.TransformResponse(resp)
	if terr != nil {
		t.Fatal(terr)
	}
	return resp, c
}

// TestCopyBodyScrubbed checks copyBody on scrubbed bodies, which it
// writes from the scrubber's buffer (ReadChunk) instead of copying them
// into its own: over random binary bodies with every form of the secret
// planted, read from upstream in pieces of many sizes, the client gets
// the bytes a plain Read of the same scrubbed body gives, with nothing of
// the secret, and the same count of redactions.
func TestCopyBodyScrubbed(t *testing.T) {
	g := &Gateway{buffers: newBufferPool()}
	if resp, _ := scrubbedResponse(t, []byte("x"), []int{1}, 1, nil); !isChunkReader(resp.Body) {
		t.Fatal("a scrubbed body is not a chunkReader: copyBody copies it twice")
	}
	forms := scrubForms()
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 30 {
		data := make([]byte, 1+r.IntN(200<<10))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		planted := 0
		names := []string{"raw", "base64", "base64url", "query", "path", "json"}
		for i, name := range names {
			// Each form in a sixth of the body of its own.
			f, seg := forms[name], len(data)/len(names)
			if len(f) >= seg || round%3 == 2 {
				continue // some bodies hold nothing: every chunk direct
			}
			copy(data[i*seg+r.IntN(seg-len(f)):], f)
			planted++
		}
		sizes := []int{1 + r.IntN(40<<10), 1 + r.IntN(100), 16 << 10}
		cl := int64(len(data))
		if round%4 == 3 {
			cl = -1
		}
		resp, count := scrubbedResponse(t, data, sizes, cl, nil)
		w := &recordingWriter{header: http.Header{}, failAfter: -1}
		if err := g.copyBody(t.Context(), w, http.NewResponseController(w), resp.Body, cl < 0, cl); err != nil {
			t.Fatalf("round %d: copyBody: %v", round, err)
		}
		want, wantCount := scrubbedResponse(t, data, sizes, cl, nil)
		wantBody, err := io.ReadAll(struct{ io.Reader }{want.Body})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.body.Bytes(), wantBody) {
			t.Fatalf("round %d (%d bytes, reads %v): copyBody wrote %d bytes that differ from the scrubbed body's %d", round, len(data), sizes, w.body.Len(), len(wantBody))
		}
		if l := leaks(w.body.String()); len(l) > 0 {
			t.Fatalf("round %d: the client got the secret as %v", round, l)
		}
		if count.Count() != wantCount.Count() || count.Count() < int64(planted) {
			t.Fatalf("round %d: %d redactions counted, a plain read counts %d, %d forms planted", round, count.Count(), wantCount.Count(), planted)
		}
	}
}

func isChunkReader(r io.Reader) bool {
	_, ok := r.(chunkReader)
	return ok
}

// TestCopyBodyScrubbedSemantics: through ReadChunk, a small scrubbed body
// complete in its first read still leaves in one write and no flush (with
// its headers, when the handler returns), a larger one is flushed as it
// comes, a failed client write is errClientWrite, and an upstream read
// error is returned (the response is aborted) with nothing written past
// what was scrubbed before it.
func TestCopyBodyScrubbedSemantics(t *testing.T) {
	g := &Gateway{buffers: newBufferPool()}
	small := []byte(`{"id":"ch_1","echo":"` + scrubSecret + `","status":"ok"}`)
	resp, count := scrubbedResponse(t, small, []int{len(small)}, int64(len(small)), nil)
	w := &recordingWriter{header: http.Header{}, failAfter: -1}
	if err := g.copyBody(t.Context(), w, http.NewResponseController(w), resp.Body, false, int64(len(small))); err != nil {
		t.Fatal(err)
	}
	// No flush of the body: it leaves with the headers when the handler
	// returns. (The headers alone are flushed first when the first read
	// took longer than headerHold, which a busy machine can make it.)
	if w.writes != 1 || w.bodyFlushes != 0 || len(leaks(w.body.String())) > 0 || count.Count() != 1 || w.body.Len() != len(small) {
		t.Errorf("small body: %d writes, %d flushes after it, %d redactions, %q; want 1 write, no flush after it, 1 redaction, the length kept", w.writes, w.bodyFlushes, count.Count(), w.body.String())
	}

	large := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB, no secret
	resp, _ = scrubbedResponse(t, large, []int{16 << 10}, int64(len(large)), nil)
	w = &recordingWriter{header: http.Header{}, failAfter: -1}
	if err := g.copyBody(t.Context(), w, http.NewResponseController(w), resp.Body, false, int64(len(large))); err != nil {
		t.Fatal(err)
	}
	// Each write flushed; the headers may have been flushed alone before
	// the first, when the first read took longer than headerHold.
	if !bytes.Equal(w.body.Bytes(), large) || w.bodyFlushes < 2 || w.bodyFlushes != w.writes {
		t.Errorf("large body: %d bytes in %d writes, %d flushes after one; want it whole, each write flushed", w.body.Len(), w.writes, w.bodyFlushes)
	}

	resp, _ = scrubbedResponse(t, large, []int{16 << 10}, int64(len(large)), nil)
	w = &recordingWriter{header: http.Header{}, failAfter: 40 << 10}
	if err := g.copyBody(t.Context(), w, http.NewResponseController(w), resp.Body, false, int64(len(large))); !errors.Is(err, errClientWrite) {
		t.Errorf("a failed client write: %v, want errClientWrite", err)
	}

	cut := errors.New("upstream reset")
	body := append(bytes.Repeat([]byte("a"), 20<<10), scrubSecret[:10]...) // ends in the start of the secret
	resp, _ = scrubbedResponse(t, body, []int{8 << 10}, int64(len(body))+100, cut)
	w = &recordingWriter{header: http.Header{}, failAfter: -1}
	if err := g.copyBody(t.Context(), w, http.NewResponseController(w), resp.Body, false, int64(len(body))+100); !errors.Is(err, cut) {
		t.Errorf("an upstream read error: %v, want it returned", err)
	}
	if w.body.Len() != 20<<10 || strings.Contains(w.body.String(), scrubSecret[:10]) {
		t.Errorf("an upstream read error: %d bytes written, want the 20 KiB before the held-back start of the secret only", w.body.Len())
	}
}

var _ http.Flusher = (*recordingWriter)(nil)

// TestBufferPool: Get gives 32 KiB whatever was put back (a buffer cut
// short too), a buffer of another capacity is left to the collector,
// and a Get and Put allocate nothing once the pool holds a buffer.
func TestBufferPool(t *testing.T) {
	p := newBufferPool()
	b := p.Get()
	if len(b) != 32<<10 || cap(b) != 32<<10 {
		t.Fatalf("Get: len %d cap %d, want 32 KiB", len(b), cap(b))
	}
	p.Put(b[:10])
	p.Put(make([]byte, 10))         // ignored
	p.Put(make([]byte, 64<<10)[1:]) // ignored: not 32 KiB from its start
	if b := p.Get(); len(b) != 32<<10 {
		t.Fatalf("Get after Put of a short slice: len %d", len(b))
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() {
		b := p.Get()
		p.Put(b)
	}); n != 0 {
		t.Errorf("Get and Put: %v allocations, want 0", n)
	}
}

// flushCounter is a ResponseWriter that counts flushes, which the header
// timer makes from its own goroutine.
type flushCounter struct {
	recordingWriter
	n atomic.Int64
}

func (w *flushCounter) Flush() { w.n.Add(1) }

// arrivalBody is an upstream body whose Read takes wait (it waits for
// the headers' flush when until is set), and that says whether it has
// arrived whole (transform.Arrival).
type arrivalBody struct {
	data    string
	arrived bool
	wait    time.Duration
	until   func() bool
}

func (b *arrivalBody) Read(p []byte) (int, error) {
	if b.until != nil && !poll.Within(10*time.Second, b.until) {
		return 0, errors.New("the headers were never flushed")
	}
	time.Sleep(b.wait)
	return copy(p, b.data), io.EOF
}

func (b *arrivalBody) Arrived() bool { return b.arrived }

// TestReadFirstArrived: the first read of a body that has arrived whole
// arms no header timer (arming one wakes an idle runtime thread; the
// read cannot wait anyway), so its headers leave with it even when the
// read itself takes longer than headerHold; a body that has not arrived,
// or cannot tell, still has its headers flushed alone when its first
// read waits. The response idle watchdog's body passes the arrival of
// the body under it on.
func TestReadFirstArrived(t *testing.T) {
	g := &Gateway{buffers: newBufferPool()}
	const data = `{"ok":true}`
	for _, tc := range []struct {
		name    string
		arrived bool
		body    func(b *arrivalBody) io.Reader
	}{
		{"arrived", true, func(b *arrivalBody) io.Reader { return b }},
		{"not arrived", false, func(b *arrivalBody) io.Reader { return b }},
		{"cannot tell", false, func(b *arrivalBody) io.Reader { return struct{ io.Reader }{b} }},
	} {
		w := &flushCounter{recordingWriter: recordingWriter{header: http.Header{}, failAfter: -1}}
		b := &arrivalBody{data: data, arrived: tc.arrived}
		if tc.arrived {
			b.wait = 10 * headerHold // a timer, had one been armed, fires meanwhile
		} else {
			b.until = func() bool { return w.n.Load() > 0 }
		}
		if err := g.copyBody(t.Context(), w, http.NewResponseController(w), tc.body(b), false, int64(len(data))); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if flushed := w.n.Load() > 0; flushed == tc.arrived || w.body.String() != data {
			t.Errorf("%s: headers flushed alone %v, body %q", tc.name, flushed, w.body.String())
		}
	}
	for _, arrived := range []bool{true, false} {
		ub := &upstreamBody{ReadCloser: struct {
			io.ReadCloser
			transform.Arrival
		}{io.NopCloser(nil), &arrivalBody{arrived: arrived}}}
		if got := transform.ArrivedWhole(ub); got != arrived {
			t.Errorf("upstreamBody over a body arrived %v: Arrived %v", arrived, got)
		}
	}
	if transform.ArrivedWhole(&upstreamBody{ReadCloser: io.NopCloser(nil)}) {
		t.Error("upstreamBody over a body that cannot tell: Arrived")
	}
}
