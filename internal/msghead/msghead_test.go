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
