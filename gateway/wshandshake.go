package gateway

import (
	"crypto/sha1" // RFC 6455 §4.2.2 fixes SHA-1 for Sec-WebSocket-Accept; nothing secret is hashed
	"encoding/base64"
	"net/http"
	"net/textproto"
)

// webSocketGUID is the constant RFC 6455 §1.3 appends to the key.
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// webSocketKey returns the request's Sec-WebSocket-Key when it is the one
// RFC 6455 §4.1 asks of a client: a single field holding the base64 form
// of 16 bytes; ok is false otherwise.
func webSocketKey(h http.Header) (key string, ok bool) {
	v := h["Sec-Websocket-Key"]
	if len(v) != 1 {
		return "", false
	}
	key = textproto.TrimString(v[0])
	b, err := base64.StdEncoding.DecodeString(key)
	return key, err == nil && len(b) == 16
}

// webSocketAccepted reports whether an upstream's 101 answers the
// upgrade request's key with the one Sec-WebSocket-Accept RFC 6455
// §4.2.2 derives from it: proof that the upstream performed the WebSocket
// handshake for this request, and so reads what follows as frames. A 101
// without it (an upstream that switches for any Upgrade field, or does
// not switch at all and goes on reading requests) would let the client
// send the upstream requests no rule decided and no audit line records.
func webSocketAccepted(reqHeader, respHeader http.Header) bool {
	key, ok := webSocketKey(reqHeader)
	if !ok {
		return false
	}
	acc := respHeader["Sec-Websocket-Accept"]
	if len(acc) != 1 {
		return false
	}
	sum := sha1.Sum([]byte(key + webSocketGUID))
	return textproto.TrimString(acc[0]) == base64.StdEncoding.EncodeToString(sum[:])
}
