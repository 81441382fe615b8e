package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net/http"

	"github.com/credgate/credgate/internal/grow"
	"github.com/credgate/credgate/transform"
)

// WebSocket frames from the upstream (RFC 6455 §5.2) are scrubbed of the
// same values as an HTTP response: a frame's header is passed on as it
// came, its payload — unmasked, as a server sends it — through the
// scrubbers, which keep its length (transform.ScrubOptions.KeepLength),
// so the header stays true. A payload up to maxWSWhole is scrubbed whole
// and sent at once; a longer one streams through the scrubber, which
// flushes at the frame's end. An occurrence split between two frames of
// a fragmented message is not found. Each frame is scanned on its own
// (no scan state crosses a frame's end), so before each frame is
// scrubbed the table of every held credential published then takes the
// place of the one the frames were scrubbed with (wsDown.refresh): a
// credential the gateway injects for the first time through another
// request while the connection is open is scrubbed from every frame
// whose payload (up to maxWSWhole) ends after the injection — a
// fragmented message begun before the injection included, from its next
// fragment on — and a longer payload, scanned as it streams, takes up
// the new table mid-payload at the first byte not yet passed on
// (transform.Table has the cut-over). Compressed frames cannot be
// scrubbed: the gateway removes Sec-WebSocket-Extensions from the
// upgrade request (wsPrepare), so the upstream does not negotiate
// permessage-deflate, and a 101 that names an extension anyway is
// refused (relayUpgrade). A frame the scrubber cannot read ends the
// connection, nothing of it passed on: RSV bits (its payload transformed
// by an extension: compressed), a masked server frame (its payload
// XORed with a key a lenient client would undo), a reserved opcode, or a
// header cut off. Scrubbing such bytes as a plain stream would find no
// secret in them while the client could still recover it.

// errWSUnreadable ends an upgraded connection whose upstream sent a
// frame the scrubber cannot read.
var errWSUnreadable = errors.New("gateway: the upstream sent a WebSocket frame that cannot be scrubbed (extension bits, masked, reserved opcode or cut off)")

// maxWSWhole is the largest frame payload scrubbed in one piece.
const maxWSWhole = 64 << 10

// wsPrepare readies the upgrade request out for scrubbed frames: those
// of a rule that scrubs, and of one with custody (the values the 101
// sets are scrubbed from the frames).
func wsPrepare(out *http.Request, st *reqState) {
	if st.resp != nil && (len(st.resp.scrubbers) > 0 || st.resp.custody != nil) {
		delete(out.Header, "Sec-Websocket-Extensions")
	}
}

// wsScrubber returns the wrapper of the upstream-to-client direction of
// an upgraded connection, and scrubs the 101's header; nil when nothing
// is scrubbed.
func (g *Gateway) wsScrubber(st *reqState, resp *http.Response) func(io.Reader) io.Reader {
	h := st.resp
	if h == nil || len(h.scrubbers) == 0 {
		return nil
	}
	hits := &wsHits{}
	h.ws = hits
	for _, s := range h.scrubbers {
		hits.add(int64(s.Header(resp.Header)))
	}
	return func(up io.Reader) io.Reader {
		return &wsDown{br: bufio.NewReaderSize(up, 4096), scrubbers: h.scrubbers, hits: hits,
			tables: &g.scrubbers, every: h.every, everyAt: h.everyAt}
	}
}

// wsHits counts the occurrences scrubbed from frames. The relay writes
// it on the handler's goroutine (the upstream-to-client copy), which
// writes the audit line once the relay ended.
type wsHits struct{ n int64 }

func (w *wsHits) add(n int64) { w.n += n }

// wsDown is the scrubbed upstream-to-client stream of frames.
type wsDown struct {
	br        *bufio.Reader
	scrubbers []*transform.Scrubber
	hits      *wsHits
	out       []byte    // ready to send
	stream    io.Reader // a long payload
	err       error
	// tables publishes the table of every held credential; every is
	// the one whose Scrubbers are scrubbers[everyAt:everyAt+every.len()]
	// (nil: the rule does not scrub, custody alone).
	tables  *scrubbers
	every   *scrubTable
	everyAt int
}

// refresh puts the table of every held credential published now in
// place of the one the frames were scrubbed with, when it is another:
// one atomic load and a pointer comparison per frame. It runs between
// frames only, never while a payload is being scanned. The scrubbers
// slice is replaced, never modified: the request's hooks share it.
func (d *wsDown) refresh() {
	if d.every == nil {
		return
	}
	t := d.tables.table.Load()
	if t == nil || t == d.every {
		return
	}
	d.scrubbers, d.every = swapEvery(d.scrubbers, d.everyAt, d.every, t), t
}

func (d *wsDown) Read(p []byte) (int, error) {
	for {
		if len(d.out) > 0 {
			n := copy(p, d.out)
			d.out = d.out[n:]
			return n, nil
		}
		if d.stream != nil {
			n, err := d.stream.Read(p)
			if err == io.EOF && d.err == nil {
				d.stream = nil // the long payload ended; next frame
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		if d.err != nil {
			return 0, d.err
		}
		d.err = d.next()
	}
}

// next reads one frame header and sets up its payload.
func (d *wsDown) next() error {
	hdr, err := d.br.Peek(2)
	if err != nil {
		if len(hdr) > 0 {
			return errWSUnreadable
		}
		return err
	}
	rsv, opcode, masked := hdr[0]&0x70, hdr[0]&0x0f, hdr[1]&0x80 != 0
	if rsv != 0 || masked || (opcode > 2 && opcode < 8) || opcode > 10 {
		return errWSUnreadable
	}
	size, n := int64(hdr[1]&0x7f), 2
	switch size {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	full, err := d.br.Peek(n)
	if err != nil {
		return errWSUnreadable
	}
	switch n {
	case 4:
		size = int64(binary.BigEndian.Uint16(full[2:4]))
	case 10:
		size = int64(binary.BigEndian.Uint64(full[2:10]) & (1<<63 - 1))
	}
	d.out = append(d.out[:0], full...)
	_, _ = d.br.Discard(n)
	if size <= maxWSWhole {
		payload, err := grow.ReadFull(d.br, nil, int(size), wsFirstBuf)
		if err != nil {
			// Cut off mid-frame: send nothing of it.
			d.out = d.out[:0]
			return err
		}
		// The whole payload arrived: a credential injected before its
		// last byte is scrubbed from it.
		d.refresh()
		for _, s := range d.scrubbers {
			var hits int
			payload, hits = s.Bytes(payload)
			d.hits.add(int64(hits))
		}
		d.out = append(d.out, payload...)
		return nil
	}
	// A long payload streams through one scan, which takes up each
	// table of every held credential published while it streams
	// (transform.Table): from the table published when its header
	// arrived on.
	d.refresh()
	var r io.Reader = io.LimitReader(d.br, size)
	counts := make([]*transform.ScrubCount, 0, len(d.scrubbers))
	for i := 0; i < len(d.scrubbers); i++ {
		c := &transform.ScrubCount{}
		counts = append(counts, c)
		if d.every != nil && i == d.everyAt && d.every.live != nil {
			r = d.every.live.Reader(r, c, &d.tables.live)
			i += d.every.len() - 1
			continue
		}
		r = d.scrubbers[i].Reader(r, c)
	}
	d.stream = &countOnEOF{Reader: r, counts: counts, hits: d.hits}
	return nil
}

// countOnEOF adds its scrubbers' counts to hits when its reader ends.
type countOnEOF struct {
	io.Reader
	counts []*transform.ScrubCount
	hits   *wsHits
	done   bool
}

func (c *countOnEOF) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	if err != nil && !c.done {
		c.done = true
		for _, cc := range c.counts {
			c.hits.add(cc.Count())
		}
	}
	return n, err
}
