//lint:file-ignore SA1019 x/net/http2.Server: see h2refusal.go

package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The classes of the requests the HTTP/2 server answers with a handler
// of its own (h2Mirror): the names follow CountError's
// ("stream_" + what the client gets + "_" + why).
const (
	// h2ClassHeaderListTooLong: a header list over the limit
	// (limits.max_header_bytes) in one HEADERS frame, answered 431.
	h2ClassHeaderListTooLong = "stream_431_header_list_too_long"
	// h2ClassConnectionField: a connection-specific field (Connection,
	// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), 400.
	h2ClassConnectionField = "stream_400_connection_specific_field"
	// h2ClassTE: TE other than "trailers" (or more than one TE), 400.
	h2ClassTE = "stream_400_te_not_trailers"
)

// h2ClassStatus is the status the client got for a refusal of class:
// the library's own answers have one, a reset stream or connection none
// (0).
func h2ClassStatus(class string) int {
	switch class {
	case h2ClassHeaderListTooLong:
		return http.StatusRequestHeaderFieldsTooLarge
	case h2ClassConnectionField, h2ClassTE:
		return http.StatusBadRequest
	}
	return 0
}

// h2ConnFields are the fields x/net/http2's server answers 400 for
// (checkValidHTTP2RequestHeaders), as they arrive (lower case).
var h2ConnFields = [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}

// h2Mirror reads what the client writes to the HTTP/2 server of one
// connection, decodes each header block a second time with
// x/net/http2's own Framer (same HPACK table size, same header list
// limit, so the same dynamic table, the same truncation and the same
// errors) and names the new streams that the server will answer itself,
// with a 431 or a 400, without running the gateway's handler. It sees
// only the frame headers of other frames. Out of step (a preface that
// is not HTTP/2, a header block the server ends the connection for, one
// over the bound) it stops: nothing it would name then is sure.
type h2Mirror struct {
	off     bool
	preface int // bytes of the client preface still to pass
	hdr     [9]byte
	n       int  // bytes of hdr read
	left    int  // payload bytes of the current frame still to pass
	keep    bool // the current frame is HEADERS or CONTINUATION: kept in blk
	blk     []byte
	max     int // blk's bound
	rd      bytes.Reader
	fr      *http2.Framer
	maxID   uint32 // the highest stream the client opened
}

// newH2Mirror is the mirror of a connection served by h2 with base
// configuration hs (http2.ConfigureServer's and ServeConn's values).
func newH2Mirror(h2 *http2.Server, hs *http.Server) *h2Mirror {
	table, list := h2MirrorLimits(h2, hs)
	m := &h2Mirror{preface: len(http2.ClientPreface), max: 4 * int(list)}
	m.fr = http2.NewFramer(nil, &m.rd)
	m.fr.ReadMetaHeaders = hpack.NewDecoder(table, nil)
	m.fr.MaxHeaderListSize = list
	return m
}

// h2MirrorLimits are the HPACK decoder table size and the header list
// limit the server advertises in its SETTINGS (x/net/http2's
// configFromServer and serverConn.maxHeaderListSize; TestH2MirrorLimits
// compares them with the SETTINGS frame).
func h2MirrorLimits(h2 *http2.Server, hs *http.Server) (table, list uint32) {
	table = h2.MaxDecoderHeaderTableSize
	if hs.HTTP2 != nil && hs.HTTP2.MaxDecoderHeaderTableSize > 0 {
		table = uint32(hs.HTTP2.MaxDecoderHeaderTableSize)
	}
	if table == 0 {
		table = 4096
	}
	n := hs.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	// 32 bytes a field for 10 fields, as the library pads it.
	return table, uint32(n + 10*32)
}

// feed reads p, the bytes the client wrote after those fed before, and
// calls answered for each new stream the server will answer itself.
func (m *h2Mirror) feed(p []byte, answered func(id uint32, class string)) {
	for len(p) > 0 && !m.off {
		if m.preface > 0 {
			k := min(m.preface, len(p))
			at := len(http2.ClientPreface) - m.preface
			if string(p[:k]) != http2.ClientPreface[at:at+k] {
				m.stop()
				return
			}
			m.preface -= k
			p = p[k:]
			continue
		}
		if m.n < 9 {
			k := copy(m.hdr[m.n:], p)
			m.n += k
			p = p[k:]
			if m.n < 9 {
				return
			}
			m.left = int(m.hdr[0])<<16 | int(m.hdr[1])<<8 | int(m.hdr[2])
			ft := http2.FrameType(m.hdr[3])
			m.keep = ft == http2.FrameHeaders || ft == http2.FrameContinuation
			if m.keep {
				if len(m.blk)+9+m.left > m.max {
					m.stop()
					return
				}
				m.blk = append(m.blk, m.hdr[:]...)
			}
		}
		k := min(m.left, len(p))
		if m.keep {
			m.blk = append(m.blk, p[:k]...)
		}
		m.left -= k
		p = p[k:]
		if m.left > 0 {
			return
		}
		m.n = 0
		// END_HEADERS is the same bit in HEADERS and CONTINUATION.
		if m.keep && http2.Flags(m.hdr[4])&http2.FlagHeadersEndHeaders != 0 {
			m.decode(answered)
		}
	}
}

// decode reads the header block in blk (HEADERS, then CONTINUATION
// frames) as the server's framer does.
func (m *h2Mirror) decode(answered func(id uint32, class string)) {
	m.rd.Reset(m.blk)
	f, err := m.fr.ReadFrame()
	m.blk = m.blk[:0]
	var se http2.StreamError
	if errors.As(err, &se) {
		// The server resets the stream (audited from the frame).
		return
	}
	mh, ok := f.(*http2.MetaHeadersFrame)
	if err != nil || !ok || m.rd.Len() > 0 {
		// The server ends the connection (audited from the frame).
		m.stop()
		return
	}
	id := mh.StreamID
	if id%2 == 0 || id <= m.maxID {
		// Trailers, or a connection error: not a new stream.
		return
	}
	m.maxID = id
	if class := h2OwnAnswer(mh); class != "" {
		answered(id, class)
	}
}

// h2OwnAnswer is the class of the answer x/net/http2's server gives
// itself to the new stream of mh (processHeaders: a truncated header
// list, then checkValidHTTP2RequestHeaders), or "".
func h2OwnAnswer(mh *http2.MetaHeadersFrame) string {
	if mh.Truncated {
		return h2ClassHeaderListTooLong
	}
	te := 0
	teBad := false
	for _, f := range mh.RegularFields() {
		for _, c := range h2ConnFields {
			if f.Name == c {
				return h2ClassConnectionField
			}
		}
		if f.Name == "te" {
			te++
			teBad = teBad || (f.Value != "trailers" && f.Value != "")
		}
	}
	if te > 1 || teBad {
		return h2ClassTE
	}
	return ""
}

func (m *h2Mirror) stop() { m.off, m.blk = true, nil }

// unfinished reports whether the client, at the point the mirror has
// read to, left a request begun and unfinished: it sent part of the
// connection preface, or part of the header block that opens a new
// stream (a HEADERS frame, and CONTINUATION frames, without END_HEADERS
// yet). Trailers of a stream already open are that stream's handler's
// to audit; a mirror out of step knows nothing.
func (m *h2Mirror) unfinished() bool {
	switch {
	case m.off:
		return false
	case m.preface > 0:
		return m.preface < len(http2.ClientPreface)
	case len(m.blk) >= 9:
		id := h2StreamID(m.blk)
		return id%2 == 1 && id > m.maxID
	}
	return false
}

// h2StreamID is the stream of a frame header.
func h2StreamID(hdr []byte) uint32 { return binary.BigEndian.Uint32(hdr[5:9]) & (1<<31 - 1) }
