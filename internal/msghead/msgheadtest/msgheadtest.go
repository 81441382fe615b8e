// Package msgheadtest helps test msghead's callers: AskedMore tells
// whether a reader of a message head waited for bytes that had not
// arrived, so that a fast path can be held to never wait where net/http's
// reader would not.
package msgheadtest

import (
	"bufio"
	"bytes"
	"errors"
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
