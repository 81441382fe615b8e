package msghead

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/msghead/msgheadtest"
)

// TestBlockWaitsNoLonger checks that Block asks for more bytes only where
// the head is a plain one still arriving.
func TestBlockWaitsNoLonger(t *testing.T) {
	any := func([]byte) bool { return true }
	for _, tc := range []struct {
		data string
		wait bool
	}{
		{"HTTP/1.1 200 OK\r\nA: b\r\n", true},
		{"HTTP/1.1 200 OK\r\nA: b\r\n\r\n", false},
		{"HTTP/1.1 200 OK\nA: b", false},
		{"HTTP/1.1 200 OK\r\n A: b", false},
		{"HTTP/1.1 200 OK\r\nA b", false},
		{"HTTP/1.1 200 OK\r\nA: \x01", false},
		{"HTTP/1.1 200 OK\r\nA: b\rc", false},
		{"HTTP/1.1 200 OK\r\n:b", false},
		{"HTTP/1.1 200 OK\r\nNoColon\r\n", false},
	} {
		if got := msgheadtest.AskedMore([]byte(tc.data), func(br *bufio.Reader) { Block(br, 1<<20, any) }); got != tc.wait {
			t.Errorf("%q: asked for more %v, want %v", tc.data, got, tc.wait)
		}
	}
	refuse := func([]byte) bool { return false }
	if msgheadtest.AskedMore([]byte("SSH-2.0-OpenSSH\r\n"), func(br *bufio.Reader) { Block(br, 1<<20, refuse) }) {
		t.Error("waited after a start line it refused")
	}
}

// TestLengthBodyErrors: a read error other than the end passes as it is.
func TestLengthBodyErrors(t *testing.T) {
	boom := errors.New("boom")
	b := &LengthBody{}
	b.Reset(io.MultiReader(strings.NewReader("ab"), errReader{boom}), 5)
	p := make([]byte, 8)
	if n, err := b.Read(p); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if _, err := b.Read(p); err != boom {
		t.Fatalf("Read error = %v, want the reader's", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// gate is a source whose first Read returns the bytes that have arrived;
// every later Read is a wait for more, counted, and returns the rest.
type gate struct {
	arrived, rest []byte
	opened        bool
	waits         int
}

func (g *gate) Read(p []byte) (int, error) {
	if !g.opened {
		g.opened = true
		return copy(p, g.arrived), nil
	}
	g.waits++
	if len(g.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}

// TestLengthBodyArrived is the differential test of Arrived: over bodies
// of several lengths, every count of bytes arrived (short of the body,
// all of it, with the next message's bytes behind it) and every count
// already read, Arrived reports true exactly when reading the body to
// its end waits for nothing more from the source; a reader that cannot
// tell what it holds (no Buffered) never counts as arrived.
func TestLengthBodyArrived(t *testing.T) {
	for _, length := range []int{1, 2, 7, 100} {
		data := []byte(strings.Repeat("x", length+5))
		for arrived := 0; arrived <= length+5; arrived++ {
			for read := 0; read <= min(arrived, length); read++ {
				g := &gate{arrived: data[:arrived], rest: data[arrived:]}
				br := bufio.NewReaderSize(g, 256)
				if arrived > 0 {
					_, _ = br.Peek(1) // the bytes that arrived are buffered
				}
				var b LengthBody
				b.Reset(br, int64(length))
				if read > 0 {
					if n, err := io.ReadFull(&b, make([]byte, read)); n != read || err != nil && err != io.EOF {
						t.Fatalf("length %d, arrived %d: read %d of %d: %v", length, arrived, n, read, err)
					}
				}
				claim := b.Arrived()
				waits := g.waits
				if got, err := io.ReadAll(&b); err != nil || len(got) != length-read {
					t.Fatalf("length %d, arrived %d, read %d: the rest is %d bytes, %v", length, arrived, read, len(got), err)
				}
				if waited := g.waits > waits; claim == waited {
					t.Errorf("length %d, arrived %d, read %d: Arrived() = %v, but reading the rest waited: %v", length, arrived, read, claim, waited)
				}
				if !b.Arrived() {
					t.Errorf("length %d, arrived %d, read %d: not Arrived() after its end", length, arrived, read)
				}
			}
		}
	}
	var b LengthBody
	b.Reset(strings.NewReader("abc"), 3)
	if b.Arrived() {
		t.Error("Arrived() over a reader that cannot tell what it holds")
	}
}
