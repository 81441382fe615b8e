package transform

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// splitReader returns its data in reads of the given sizes, cycling.
type splitReader struct {
	data  []byte
	sizes []int
	i     int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if len(s.sizes) > 0 {
		n = max(1, s.sizes[s.i%len(s.sizes)])
		s.i++
	}
	n = min(n, len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

func testMatcher() *matcher {
	return newMatcher([]needle{
		{find: []byte("SECRET-ONE"), repl: []byte("<1>")},
		{find: []byte("SECRET"), repl: []byte("<s>")},
		{find: []byte("abcabd"), repl: []byte("<a>")},
	})
}

func TestMatcherApply(t *testing.T) {
	m := testMatcher()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nothing here", "nothing here"},
		{"SECRET", "<s>"},
		{"SECRET-ONE", "<1>"}, // the longest at the same start wins
		{"xSECRET-ONxSECRET-ONE", "x<s>-ONx<1>"},
		{"abcabcabd", "abc<a>"}, // overlapping prefixes
		{"SECRETSECRET", "<s><s>"},
	} {
		got, err := m.apply([]byte(tc.in), func(*needle) error { return nil })
		if err != nil || string(got) != tc.want {
			t.Errorf("apply(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		for _, sizes := range [][]int{nil, {1}, {2, 3}, {5, 1, 7}} {
			sr := newStreamReader(&splitReader{data: []byte(tc.in), sizes: sizes}, m, func(*needle) error { return nil })
			got, err := io.ReadAll(iotest.OneByteReader(sr))
			if err != nil || string(got) != tc.want {
				t.Errorf("stream(%q, reads %v) = %q, %v; want %q", tc.in, sizes, got, err, tc.want)
			}
		}
	}
}

func TestStreamReaderBoundedAndLarge(t *testing.T) {
	m := testMatcher()
	// Many chunks with needles straddling every chunk boundary.
	var in, want strings.Builder
	for in.Len() < 5*chunk {
		in.WriteString(strings.Repeat("x", 997) + "SECRET")
		want.WriteString(strings.Repeat("x", 997) + "<s>")
	}
	sr := newStreamReader(strings.NewReader(in.String()), m, func(*needle) error { return nil })
	got, err := io.ReadAll(sr)
	if err != nil || string(got) != want.String() {
		t.Fatalf("large stream differs (err %v)", err)
	}
	if cap(sr.buf) != chunk+m.maxLen {
		t.Errorf("buffer grew to %d", cap(sr.buf))
	}
}

// TestStreamReaderSized checks that the length a body announced only
// sizes the buffer: the output is the whole-buffer rewrite whether the
// announcement is right, too short or too long, and a body read as
// announced keeps the small buffer.
func TestStreamReaderSized(t *testing.T) {
	m := testMatcher()
	in := strings.Repeat(`{"echo":"SECRET","x":"abcabcabd SECRET-ONE"} `, 40) // 1.8 KiB
	want, _ := m.apply([]byte(in), func(*needle) error { return nil })
	for _, text := range []string{"", "SECRET", "xSECRET-ONxSECRET-ONE", in, in + in + in} {
		whole, _ := m.apply([]byte(text), func(*needle) error { return nil })
		for _, expect := range []int64{-1, 0, 1, int64(len(text)) - 1, int64(len(text)), int64(len(text)) + 7, 10 << 10} {
			for _, sizes := range [][]int{nil, {1}, {5, 1, 7}} {
				sr := newStreamReaderSized(&splitReader{data: []byte(text), sizes: sizes}, m, func(*needle) error { return nil }, expect)
				got, err := io.ReadAll(sr)
				if err != nil || !bytes.Equal(got, whole) {
					t.Fatalf("sized stream (len %d, expect %d, reads %v) = %q, %v; want %q", len(text), expect, sizes, got, err, whole)
				}
			}
		}
	}
	sr := newStreamReaderSized(strings.NewReader(in), m, func(*needle) error { return nil }, int64(len(in)))
	if got, err := io.ReadAll(sr); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sized stream differs (err %v)", err)
	}
	if c := cap(sr.buf); c != len(in)+1+m.maxLen {
		t.Errorf("buffer of a %d-byte body read as announced: %d bytes, want %d", len(in), c, len(in)+1+m.maxLen)
	}
}

// A body announced at or above firstChunk is read a chunk at a time,
// whatever it announced (a 1 GiB download through 4 KiB reads cost twice
// the CPU of one through chunks): the buffer grows as for an unknown
// length. Only a small announced body keeps the buffer sized for it.
func TestStreamReaderGrowsForLargeBodies(t *testing.T) {
	m := testMatcher()
	body := bytes.Repeat([]byte("0123456789abcdef"), (4*chunk)/16)
	for _, expect := range []int64{-1, firstChunk, int64(len(body)), int64(len(body)) + 100, 1 << 30} {
		sr := newStreamReaderSized(bytes.NewReader(body), m, func(*needle) error { return nil }, expect)
		if _, err := io.Copy(io.Discard, sr); err != nil {
			t.Fatal(err)
		}
		if want := chunk + m.maxLen; cap(sr.buf) < want {
			t.Errorf("announced %d, %d bytes read: buffer %d bytes, want it grown to %d", expect, len(body), cap(sr.buf), want)
		}
	}
}

func TestStreamReaderError(t *testing.T) {
	m := testMatcher()
	boom := io.ErrUnexpectedEOF
	sr := newStreamReader(io.MultiReader(strings.NewReader("data SECR"), iotest.ErrReader(boom)), m, func(*needle) error { return nil })
	got, err := io.ReadAll(sr)
	if err != boom {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if bytes.Contains(got, []byte("SECR")) {
		t.Errorf("held-back bytes of a failed body were emitted: %q", got)
	}
}

// naiveFirst is matcher.first by brute force.
func naiveFirst(m *matcher, b []byte) (int, int) {
	for at := 0; at < len(b); at++ {
		for i, n := range m.needles {
			if bytes.HasPrefix(b[at:], n.find) {
				return at, i
			}
		}
	}
	return -1, -1
}

// FuzzMatcher checks the Wu-Manber search against brute force, and the
// stream reader against the whole-buffer rewrite.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte("abcabd"), []byte("ab"), []byte("xxabcabcabdyy"), byte(3))
	f.Add([]byte("SECRET"), []byte("CRE"), []byte("SECRSECRETCREx"), byte(1))
	f.Fuzz(func(t *testing.T, n1, n2, text []byte, size byte) {
		if len(n1) < 2 || len(n2) < 2 || len(n1) > 64 || len(n2) > 64 {
			return
		}
		m := newMatcher([]needle{{find: n1, repl: []byte("1")}, {find: n2, repl: []byte("2")}})
		at, w := m.first(text)
		nat, nw := naiveFirst(m, text)
		if at != nat || (at >= 0 && w != nw) {
			t.Fatalf("first = %d,%d; brute force %d,%d", at, w, nat, nw)
		}
		whole, _ := m.apply(text, func(*needle) error { return nil })
		got, err := io.ReadAll(newStreamReader(&splitReader{data: text, sizes: []int{int(size)}}, m, func(*needle) error { return nil }))
		if err != nil || !bytes.Equal(got, whole) {
			t.Fatalf("stream %q, whole %q (%v)", got, whole, err)
		}
		// The announced length is a hint only: right, short or long.
		expect := int64(len(text)) + int64(size%5) - 2
		got, err = io.ReadAll(newStreamReaderSized(&splitReader{data: text, sizes: []int{int(size)}}, m, func(*needle) error { return nil }, expect))
		if err != nil || !bytes.Equal(got, whole) {
			t.Fatalf("sized stream (expect %d) %q, whole %q (%v)", expect, got, whole, err)
		}
	})
}
