package gateway

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestWebSocketFrameMemoryFollowsBytesReceived is the class "a payload
// held whole is allocated at the size its header declared": a WebSocket
// frame whose header declares a large payload, followed by a few bytes
// (or none) and a stall, holds memory in proportion to the bytes
// received, in each reader that holds a frame whole: the client's text
// frames searched for placeholders (up to maxWSFrame) and the upstream's
// frames scrubbed whole (up to maxWSWhole). Before, each allocated the
// declared size at the header: a client held 1 MiB per WebSocket for 14
// bytes. (injectors/sigv4 TestChunkMemoryFollowsBytesReceived holds the
// aws-chunked decoder, the third reader of the class, to the same.)
func TestWebSocketFrameMemoryFollowsBytesReceived(t *testing.T) {
	// header returns a frame header declaring size bytes of payload.
	header := func(b0 byte, masked bool, size int) []byte {
		h := []byte{b0, 127}
		h = binary.BigEndian.AppendUint64(h, uint64(size))
		if masked {
			h[1] |= 0x80
			h = append(h, 1, 2, 3, 4)
		}
		return h
	}
	readers := []struct {
		name     string
		declared int
		head     []byte
		reader   func(io.Reader) io.Reader
	}{
		{"client text frame", maxWSFrame, header(0x81, true, maxWSFrame), func(r io.Reader) io.Reader {
			return &wsFrameReader{src: r}
		}},
		{"upstream frame", maxWSWhole, header(0x82, false, maxWSWhole), func(r io.Reader) io.Reader {
			return &wsDown{br: bufio.NewReaderSize(r, 4096), hits: &wsHits{}}
		}},
	}
	for _, rd := range readers {
		for _, sent := range []int{0, 85} {
			t.Run(fmt.Sprintf("%s declared %d sent %d", rd.name, rd.declared, sent), func(t *testing.T) {
				received := sent + 1
				// TotalAlloc is the process's: what other goroutines of
				// the test binary allocate meanwhile adds to it, never
				// takes from it. The least of three stalls is the
				// reader's; the bound stays well under the smallest
				// declared size (maxWSWhole, 64 KiB) the bug allocated.
				bound := uint64(2*received + wsFirstBuf + 24<<10)
				least := uint64(math.MaxUint64)
				for range 3 {
					least = min(least, stalledAlloc(t, rd.reader, rd.head, sent))
					if least <= bound {
						return
					}
				}
				t.Errorf("%d bytes allocated while stalled after %d bytes of a frame declared as %d (the least of 3 stalls); want at most %d", least, received, rd.declared, bound)
			})
		}
	}
}

// stalledAlloc feeds the reader r makes a frame header head and sent
// bytes of its payload, then one more byte, which the pipe hands over
// only once the reader consumed everything before it and waits for more
// of the payload, its buffer allocated: the stall. It returns the bytes
// the process allocated meanwhile, then cuts the frame off and checks
// the reader does not take that for a clean end.
func stalledAlloc(t *testing.T, reader func(io.Reader) io.Reader, head []byte, sent int) uint64 {
	t.Helper()
	pr, pw := io.Pipe()
	r := reader(pr)
	done := make(chan error, 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	if _, err := pw.Write(append(slices.Clip(head), strings.Repeat("d", sent)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte{'d'}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	pw.Close()
	if err := <-done; err == nil {
		t.Error("a frame cut off mid-payload ended cleanly")
	}
	return after.TotalAlloc - before.TotalAlloc
}
