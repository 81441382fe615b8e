package grow

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// trickle returns at most n bytes per Read.
type trickle struct {
	r io.Reader
	n int
}

func (t *trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.n)]) }

// FuzzReadFull: whatever the size declared and however the bytes come,
// ReadFull returns exactly the bytes sent (all of size, or what came
// before the end with io.ErrUnexpectedEOF) in a buffer of at most
// max(first, 2 × the bytes received).
func FuzzReadFull(f *testing.F) {
	f.Add([]byte("abc"), 1<<30, 1000, 16)
	f.Add(bytes.Repeat([]byte("d"), 70000), 50000, 4096, 4096)
	f.Add([]byte{}, 0, 1, 1)
	f.Fuzz(func(t *testing.T, data []byte, size, chunk, first int) {
		if size < 0 || chunk <= 0 || first <= 0 || first > 1<<20 {
			return
		}
		got, err := ReadFull(&trickle{r: bytes.NewReader(data), n: chunk}, nil, size, first)
		switch {
		case len(data) >= size:
			if err != nil || !bytes.Equal(got, data[:size]) {
				t.Fatalf("size %d of %d bytes: %d bytes, %v", size, len(data), len(got), err)
			}
		default:
			if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data) {
				t.Fatalf("size %d of %d bytes: %d bytes, %v; want them all and io.ErrUnexpectedEOF", size, len(data), len(got), err)
			}
		}
		if limit := max(first, 2*len(data)); cap(got) > limit {
			t.Fatalf("a buffer of %d bytes for %d received (size %d, first %d); want at most %d", cap(got), len(data), size, first, limit)
		}
	})
}

// TestReadFullReuses: a buffer large enough is reused, whatever its length.
func TestReadFullReuses(t *testing.T) {
	buf := make([]byte, 3, 64)
	got, err := ReadFull(bytes.NewReader([]byte("hello world")), buf, 5, 4)
	if err != nil || string(got) != "hello" || &got[0] != &buf[:1][0] {
		t.Fatalf("got %q, %v (reused: %v)", got, err, len(got) > 0 && &got[0] == &buf[:1][0])
	}
}
