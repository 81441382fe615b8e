package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/credgate/credgate/internal/grow"
	"github.com/credgate/credgate/transform"
)

// maxWSFrame bounds a WebSocket data frame the gateway substitutes
// placeholders in: the frame is held whole to be rewritten with its new
// length. A larger frame from the client ends the connection (fail
// closed: its bytes would otherwise pass unsearched).
const maxWSFrame = 1 << 20

// wsFirstBuf is the first allocation for a frame payload held whole
// (a client's text frame here, an upstream's frame in wsscrub.go); the
// buffer then doubles as the payload arrives (internal/grow), so a peer
// that declares a large frame and sends little holds little.
const wsFirstBuf = 4 << 10

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
)

// errWSFrame ends a WebSocket whose client frames cannot be searched.
var errWSFrame = errors.New("websocket frame cannot be searched for placeholders")

// wsFrames returns the transform of the frames a client sends on a
// WebSocket that x's rule allowed: the payload of each text frame is
// substituted (transform.Substituter.TextFrame; JSON-escaped when the
// message starts with '{' or '['), and a tripwire ends the connection
// and is handled as in a request.
func (g *Gateway) wsFrames(x *exchange, a admission, ph *phState) func(io.Reader) io.Reader {
	return func(r io.Reader) io.Reader {
		return &wsFrameReader{src: r, sub: ph.sub, rep: ph.rep, onMisuse: func(me *transform.MisuseError) {
			g.streamTripped(x, a.wl, a.d, ph, me)
		}}
	}
}

// wsFrameReader reads client-to-server WebSocket frames from src and
// yields them rewritten. Control frames and binary messages pass
// unchanged; frames with RSV bits (an extension the gateway did not let
// the client negotiate) end the stream.
type wsFrameReader struct {
	src      io.Reader
	sub      *transform.Substituter
	rep      *transform.Report
	onMisuse func(*transform.MisuseError)

	out    []byte // rewritten bytes not yet read
	pass   uint64 // payload bytes of a non-text frame still to relay as they are
	inText bool   // the current fragmented message is text
	asJSON bool   // ... and JSON
	err    error
}

func (f *wsFrameReader) Read(p []byte) (int, error) {
	if len(f.out) == 0 && f.pass > 0 {
		if uint64(len(p)) > f.pass {
			p = p[:f.pass]
		}
		n, err := f.src.Read(p)
		f.pass -= uint64(n)
		if errors.Is(err, io.EOF) && f.pass > 0 {
			err = fmt.Errorf("%w: truncated frame", errWSFrame)
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return n, err
	}
	for len(f.out) == 0 && f.pass == 0 {
		if f.err != nil {
			return 0, f.err
		}
		f.err = f.next()
	}
	if len(f.out) == 0 {
		return f.Read(p)
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// next reads one frame into f.out.
func (f *wsFrameReader) next() error {
	var h [14]byte
	if _, err := io.ReadFull(f.src, h[:2]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated header", errWSFrame)
		}
		return err
	}
	b0, b1 := h[0], h[1]
	op := b0 & 0x0f
	if b0&0x70 != 0 {
		return fmt.Errorf("%w: RSV bits set (compressed or extended frame)", errWSFrame)
	}
	masked := b1&0x80 != 0
	hl := 2
	n := uint64(b1 & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(f.src, h[2:4]); err != nil {
			return fmt.Errorf("%w: %v", errWSFrame, err)
		}
		n, hl = uint64(binary.BigEndian.Uint16(h[2:4])), 4
	case 127:
		if _, err := io.ReadFull(f.src, h[2:10]); err != nil {
			return fmt.Errorf("%w: %v", errWSFrame, err)
		}
		n, hl = binary.BigEndian.Uint64(h[2:10]), 10
	}
	var key []byte
	if masked {
		if _, err := io.ReadFull(f.src, h[hl:hl+4]); err != nil {
			return fmt.Errorf("%w: %v", errWSFrame, err)
		}
		key = h[hl : hl+4]
	}
	if op >= 0x8 || op == wsBinary || (op == wsContinuation && !f.inText) {
		// Not text: the header now, the payload streamed as it comes.
		if op == wsBinary {
			f.inText = false
		}
		f.out = append([]byte(nil), h[:hl+len(key)]...)
		f.pass = n
		return nil
	}
	if n > maxWSFrame {
		return fmt.Errorf("%w: a text frame of %d bytes is larger than %d", errWSFrame, n, maxWSFrame)
	}
	// Held whole, but memory follows the bytes received, not the size
	// the header declared.
	payload, err := grow.ReadFull(f.src, nil, int(n), wsFirstBuf)
	if err != nil {
		return fmt.Errorf("%w: %v", errWSFrame, err)
	}
	maskBytes(payload, key)
	if op == wsText {
		f.asJSON = jsonStart(payload)
	}
	// Without FIN, continuation frames of this text message follow.
	f.inText = b0&0x80 == 0
	out, err := f.sub.TextFrame(f.rep, payload, f.asJSON)
	if err != nil {
		var me *transform.MisuseError
		if errors.As(err, &me) {
			f.onMisuse(me) // once: the error is sticky
		}
		return err
	}
	maskBytes(out, key)
	f.out = appendWSHeader(make([]byte, 0, 14+len(out)), b0, masked, key, len(out))
	f.out = append(f.out, out...)
	return nil
}

// jsonStart reports whether a text message looks like JSON (its first
// non-space byte opens an object or array).
func jsonStart(p []byte) bool {
	for _, c := range p {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// maskBytes applies (or removes) the WebSocket mask key to p; a nil key
// leaves p alone.
func maskBytes(p, key []byte) {
	if key == nil {
		return
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// appendWSHeader appends a frame header with first byte b0, the mask key
// (when masked) and payload length n.
func appendWSHeader(b []byte, b0 byte, masked bool, key []byte, n int) []byte {
	var mbit byte
	if masked {
		mbit = 0x80
	}
	b = append(b, b0)
	switch {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n <= 0xffff:
		b = append(b, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, key...)
}

// bufferedConn is a net.Conn whose reads come from r first (the bytes a
// client sent right after its upgrade request, already buffered).
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
