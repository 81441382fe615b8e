package sigv4

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestChunkMemoryFollowsBytesReceived: a chunk header declaring a large
// size followed by a few bytes and a stall (then EOF) holds memory in
// proportion to the bytes received, not to the size declared. Eight
// uploads declaring 128 MiB and sending 85 bytes each used to hold 1 GiB.
func TestChunkMemoryFollowsBytesReceived(t *testing.T) {
	const maxChunk = 128 << 20
	sig := strings.Repeat("0", 64)
	for _, declared := range []int{1 << 20, 16 << 20, maxChunk} {
		for _, sent := range []int{0, 85, 100 << 10} {
			t.Run(fmt.Sprintf("declared %d sent %d", declared, sent), func(t *testing.T) {
				pr, pw := io.Pipe()
				c := newChunkedBody(pr, newChunkSigner([]byte("k"), "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", sig), false, maxChunk)
				data := []byte(fmt.Sprintf("%x;chunk-signature=%s\r\n", declared, sig) + strings.Repeat("d", sent))

				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				done := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.Discard, c)
					done <- err
				}()
				if _, err := pw.Write(data); err != nil {
					t.Fatal(err)
				}
				// A further byte is taken only once the decoder has consumed
				// everything before it and waits for more of the chunk, its
				// buffer allocated: the stall.
				if _, err := pw.Write([]byte{'d'}); err != nil {
					t.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				received := sent + 1
				bound := uint64(2*received + minChunkBuf + 256<<10) // + slack for the runtime and the test
				if got := after.TotalAlloc - before.TotalAlloc; got > bound {
					t.Errorf("%d bytes allocated while stalled after %d bytes of a chunk declared as %d; want at most %d", got, received, declared, bound)
				}

				pw.Close()
				if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
				}
				if cbound := max(2*received, minChunkBuf); cap(c.data) > cbound {
					t.Errorf("chunk buffer of %d bytes after %d received; want at most %d", cap(c.data), received, cbound)
				}
			})
		}
	}
}

// TestChunkDataAcrossGrowth: chunks larger than the first buffer, sent in
// small pieces, are re-signed byte for byte (the buffer grows under the
// data without losing any).
func TestChunkDataAcrossGrowth(t *testing.T) {
	for _, size := range []int{1, minChunkBuf - 1, minChunkBuf, minChunkBuf + 1, 5*minChunkBuf + 7} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		want := chunkedBodyOf(payload, size, nil, nil)
		src := &trickle{r: strings.NewReader(want), n: 1000}
		c := newChunkedBody(io.NopCloser(src), newChunkSigner([]byte("k"), "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", strings.Repeat("0", 64)), false, 1<<20)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(got) != len(want) {
			t.Fatalf("size %d: %d bytes out, %d in", size, len(got), len(want))
		}
		if !strings.Contains(string(got), string(payload)) {
			t.Errorf("size %d: the chunk data changed", size)
		}
	}
}

// trickle returns at most n bytes per Read.
type trickle struct {
	r io.Reader
	n int
}

func (t *trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.n)]) }

// FuzzChunkBuffer: whatever the body, the chunk buffer never holds more
// than twice the bytes received (or the first 32 KiB), whatever sizes
// the chunk headers declare.
func FuzzChunkBuffer(f *testing.F) {
	sig := strings.Repeat("0", 64)
	f.Add([]byte("7fffffff;chunk-signature=" + sig + "\r\nabc"))
	f.Add([]byte("8000000;chunk-signature=" + sig + "\r\n" + strings.Repeat("d", 40000)))
	f.Add([]byte(chunkedBodyOf(make([]byte, 70000), 50000, nil, nil)))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := newChunkedBody(io.NopCloser(&trickle{r: strings.NewReader(string(body)), n: 4096}),
			newChunkSigner([]byte("k"), "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", sig), false, 1<<30)
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if limit := max(2*len(body), minChunkBuf); cap(c.data) > limit {
				t.Fatalf("chunk buffer of %d bytes for a body of %d", cap(c.data), len(body))
			}
			if err != nil {
				return
			}
		}
	})
}
