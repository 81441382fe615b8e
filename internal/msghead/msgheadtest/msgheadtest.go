// Package msgheadtest helps test msghead's callers against net/http:
// AskedMore tells whether a reader of a message head waited for bytes
// that had not arrived, so that a fast path can be held to never wait
// where net/http's reader would not; Reads records a body's reads, so
// that two bodies can be compared read by read.
package msgheadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// errNoMore is what the probe returns once its bytes are read: where a
// connection would make the reader wait.
var errNoMore = errors.New("msgheadtest: no more bytes have arrived")

// waitProbe returns its bytes, then errNoMore, noting that more was asked
// for.
type waitProbe struct {
	r     *bytes.Reader
	asked bool
}

func (p *waitProbe) Read(b []byte) (int, error) {
	if p.r.Len() == 0 {
		p.asked = true
		return 0, errNoMore
	}
	return p.r.Read(b)
}

// AskedMore reports whether read, given a bufio.Reader (4 KiB) over data
// after which the connection would wait, asked for more bytes than data.
func AskedMore(data []byte, read func(*bufio.Reader)) bool {
	p := &waitProbe{r: bytes.NewReader(data)}
	read(bufio.NewReaderSize(p, 4<<10))
	return p.asked
}

// readSizes is the sequence of read sizes Reads uses, so that where a
// body returns its EOF (with the last bytes or after them) is compared
// too.
var readSizes = [...]int{1, 7, 0, 64, 3, 4096}

// Reads reads b with the sizes of readSizes, repeated, until an error
// (at most 10,000 reads) and returns every read's bytes and error.
func Reads(b io.Reader) []string {
	var out []string
	for i := 0; i < 10000; i++ {
		p := make([]byte, readSizes[i%len(readSizes)])
		n, err := b.Read(p)
		out = append(out, fmt.Sprintf("%q %v", p[:n], err))
		if err != nil {
			return out
		}
	}
	return append(out, "too many reads")
}
