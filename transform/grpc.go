package transform

import (
	"encoding/binary"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// ErrGRPCFraming ends a scrubbed gRPC response body that broke its
// message framing right after the end of a message at which bytes that
// may begin a secret's form were passed on (grpcFrames): what follows
// could complete the form, so none of it is.
var ErrGRPCFraming = errors.New("transform: a gRPC response body broke its message framing after the end of a message; the rest was not passed on")

// ErrGRPCCompressed ends a scrubbed gRPC response body at a compressed
// message (its flags byte says so; grpc-encoding gzip, say): the
// scrubber cannot read inside it, so it is not passed on, as a body in a
// Content-Encoding the scrubber cannot decode is not. The gateway asks
// for uncompressed messages (PrepareGRPCRequest); a server that
// compresses anyway has its call cut there.
var ErrGRPCCompressed = errors.New("transform: a gRPC response message is compressed (grpc-encoding), which the scrubber cannot read; it was not passed on")

// PrepareGRPCRequest asks the upstream for uncompressed gRPC messages in
// its response when the request says what it accepts
// (grpc-accept-encoding: identity, replacing the client's list), as
// PrepareRequest does for the body's Content-Encoding. A gRPC server
// compresses a response's messages only with an encoding the request
// accepts.
func PrepareGRPCRequest(h http.Header) {
	if _, ok := h["Grpc-Accept-Encoding"]; ok {
		h["Grpc-Accept-Encoding"] = []string{"identity"}
	}
}

// grpcFlag reports whether b can begin a gRPC (or gRPC-Web) message's
// 5-byte prefix: its flags byte, 0 or 1 (compressed), and for gRPC-Web
// 0x80 or 0x81 (a trailer frame).
func grpcFlag(b byte) bool { return b&^0x81 == 0 }

// grpcFramed reports whether a response with header h carries
// length-prefixed gRPC messages: application/grpc, application/grpc+proto
// (any +suffix), application/grpc-web and application/grpc-web+proto.
// gRPC-Web's text form (base64) is not: its bytes are not the messages'.
//
// Every response of a scrubbing rule asks this, so a type that cannot be
// one of those is told apart before mime.ParseMediaType, which allocates
// its parameters' map: the media type is what comes before the first ';',
// trimmed and compared without case, and if that does not begin with
// "application/grpc" the parse could not return a gRPC type either
// (TestGRPCFramedAgreesWithParse).
func grpcFramed(h http.Header) bool {
	ct := h.Get("Content-Type")
	if !maybeGRPC(ct) {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	for _, base := range []string{"application/grpc", "application/grpc-web"} {
		if mt == base || strings.HasPrefix(mt, base+"+") {
			return true
		}
	}
	return false
}

// maybeGRPC reports whether the media type of Content-Type value ct may
// be one grpcFramed accepts: false only when mime.ParseMediaType could
// not return one. Those all begin with "application/grpc", and the parse
// returns the part before the first ';', trimmed of white space and in
// lower case. An ASCII value is checked here (its white space and case
// are ASCII's); any other is left to the parse, whose Unicode lower case
// maps some letters to ASCII ones ('\u0130' to 'i').
func maybeGRPC(ct string) bool {
	const base = "application/grpc"
	for i := 0; i < len(ct); i++ {
		if ct[i] >= utf8.RuneSelf {
			return true
		}
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimLeft(mt, " \t\n\v\f\r")
	return len(mt) >= len(base) && strings.EqualFold(mt[:len(base)], base)
}

// grpcFrames follows the messages of a gRPC body (each a flags byte, a
// 4-byte big-endian length and the message) as a streamReader reads it.
// A gRPC stream pauses at the end of a message: a server-streaming call
// between two events, a bidirectional one until the client answers. A
// streamReader holds back an end of what it read that begins a needle,
// so a message ending in bytes that begin a form of a secret (its first
// letter, for a raw token) was held back until the next message came:
// the client, waiting for the whole message, waited for the next one, or
// for ever. The next message's first byte is a flags byte (grpcFlag);
// when no needle has such a byte after its first (matcher.spansFrames),
// no needle can continue past the end of a message, and nothing needs
// holding back there. A compressed message (its flags byte's low bit)
// is not passed on (ErrGRPCCompressed). A body that is not what it said — its next byte
// is no flags byte — cannot be trusted to be: if bytes were passed on
// at that end, reading stops with ErrGRPCFraming (the client gets at
// most a beginning of a form, as from a body that ends there).
type grpcFrames struct {
	left uint64 // bytes of the current message still to come
	hdr  [5]byte
	nhdr int // bytes of the next prefix read so far
	// broken is set once the body is seen not to be framed: no end of
	// a message is trusted after.
	broken bool
	// released is set when bytes that would have been held back were
	// passed on at the end of the message the body is at.
	released bool
	// err, once feed returned it, ends the body after the bytes before
	// it.
	err error
}

// atBoundary reports whether what was read ends a message.
func (f *grpcFrames) atBoundary() bool { return !f.broken && f.left == 0 && f.nhdr == 0 }

// feed follows p, the bytes read after those fed before. It returns how
// many of them may be passed on and, when that is not all, why not: a
// compressed message (ErrGRPCCompressed), which the scrubber cannot read,
// or bytes that break the framing right after an end of a message at
// which bytes were released (ErrGRPCFraming).
func (f *grpcFrames) feed(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !f.broken {
		if f.left > 0 {
			k := min(uint64(len(p)), f.left)
			f.left -= k
			p = p[k:]
			continue
		}
		if f.nhdr == 0 {
			switch {
			case !grpcFlag(p[0]):
				f.broken = true
				if f.released {
					return n - len(p), ErrGRPCFraming
				}
				return n, nil
			case p[0]&1 != 0:
				return n - len(p), ErrGRPCCompressed
			}
			f.released = false
		}
		f.hdr[f.nhdr] = p[0]
		f.nhdr++
		p = p[1:]
		if f.nhdr == len(f.hdr) {
			f.left = uint64(binary.BigEndian.Uint32(f.hdr[1:]))
			f.nhdr = 0
		}
	}
	return n, nil
}
