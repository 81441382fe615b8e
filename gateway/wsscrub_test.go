package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/secret"
)

// wsFrame encodes one unmasked frame, as a server sends it.
func wsFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch n := len(payload); {
	case n < 126:
		h = []byte{b0, byte(n)}
	case n < 1<<16:
		h = []byte{b0, 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = make([]byte, 10)
		h[0], h[1] = b0, 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	return append(h, payload...)
}

// readWSFrame reads one unmasked frame.
func readWSFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		_, err = io.ReadFull(r, ext[:])
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, err = io.ReadFull(r, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0] & 0x0f, payload, err
}

// TestWebSocketFramesScrubbed: an upstream's WebSocket frames that echo
// the secret — a small text frame, a fragment, a binary frame, a close
// frame's reason and a text frame over the whole-frame size — reach the
// client scrubbed, with their lengths (and so the framing) intact; a
// frame is delivered while the upstream waits for the client's answer;
// the upgrade request reaches the upstream without
// Sec-WebSocket-Extensions (no compression the gateway could not read).
func TestWebSocketFramesScrubbed(t *testing.T) {
	tg := startScrubGateway(t)
	big := bytes.Repeat([]byte("x"), maxWSWhole+100)
	copy(big[maxWSWhole-10:], scrubSecret) // across the whole-frame limit
	tg.origin.route("/s/ws", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(rw, wsSwitch(r)+"\r\n")
		rw.Write(wsFrame(true, 1, []byte(`{"op":"hello","you_sent":"`+scrubSecret+`"}`)))
		rw.Flush()
		// Interactive: the next frames only after the client answered.
		if _, err := rw.ReadString('\n'); err != nil {
			return
		}
		rw.Write(wsFrame(false, 1, []byte("part one "+scrubForms()["json"])))
		rw.Write(wsFrame(true, 0, []byte(" part two")))
		rw.Write(wsFrame(true, 2, []byte("bin:"+scrubForms()["base64"])))
		rw.Write(wsFrame(true, 1, big))
		rw.Write(wsFrame(true, 8, append([]byte{0x03, 0xe8}, "bye "+scrubSecret...)))
		rw.Flush()
	})

	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(tc, "GET /s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", apiHost)
	tbr := bufio.NewReader(tc)
	if resp, err := http.ReadResponse(tbr, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var seen strings.Builder
	op, p, err := readWSFrame(tbr)
	if err != nil || op != 1 || !strings.HasPrefix(string(p), `{"op":"hello","you_sent":"`+secret.Redacted) {
		t.Fatalf("first frame %d %q, %v; want it scrubbed, before the client answered", op, p, err)
	}
	seen.Write(p)
	fmt.Fprint(tc, "ack\n")
	for _, want := range []byte{1, 0, 2, 1, 8} {
		op, p, err := readWSFrame(tbr)
		if err != nil || op != want {
			t.Fatalf("frame: opcode %d (%d bytes), %v; want opcode %d", op, len(p), err, want)
		}
		if op == 1 && len(p) == len(big) {
			if !bytes.Contains(p, []byte(secret.Redacted)) {
				t.Errorf("the long frame is not scrubbed")
			}
		}
		seen.Write(p)
	}
	if l := leaks(seen.String()); len(l) > 0 {
		t.Errorf("the client saw the secret as %v", l)
	}
	if c := strings.Count(seen.String(), secret.Redacted); c != 5 {
		t.Errorf("%d markers in the frames, want 5 (hello, fragment, binary, long, close)", c)
	}
	for _, s := range tg.origin.all() {
		if s.Path == "/s/ws" && s.Header.Get("Sec-Websocket-Extensions") != "" {
			t.Errorf("the upgrade request reached the upstream with Sec-WebSocket-Extensions %q", s.Header.Get("Sec-Websocket-Extensions"))
		}
	}
	tc.Close()
	waitFor(t, 5*time.Second, "the WebSocket's audit line with its scrubbed count", func() bool {
		return strings.Contains(tg.audit.String(), `"status":101`) && strings.Contains(tg.audit.String(), `"scrubbed":5`)
	})
}

// TestWebSocketFramesScrubberCannotRead: an upstream whose frames the
// scrubber cannot read never gets them to the client. Each case is one
// way to carry the echoed secret past a byte search: a 101 that
// negotiates permessage-deflate although the gateway offered no
// extension (refused, 502: the client offered it and would inflate the
// frames), and, after a first frame that is relayed scrubbed, a
// compressed frame (RSV1) without any extension negotiated, a masked
// server frame, a reserved opcode, and a frame whose header is cut off.
// The client receives the first frame, then the connection ends with
// nothing of the hostile frame.
func TestWebSocketFramesScrubberCannotRead(t *testing.T) {
	deflated := func(s string) []byte {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.BestSpeed)
		_, _ = w.Write([]byte(s))
		_ = w.Flush()
		return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
	}
	mask := []byte{0x5a, 0xa5, 0x3c, 0xc3}
	masked := func(s string) []byte {
		p := []byte(s)
		h := []byte{0x81, 0x80 | byte(len(p))}
		h = append(h, mask...)
		for i := range p {
			p[i] ^= mask[i%4]
		}
		return append(h, p...)
	}
	compressed := wsFrame(true, 1, deflated("echo "+scrubSecret))
	compressed[0] |= 0x40 // RSV1: permessage-deflate
	cases := []struct {
		name       string
		extensions string // in the 101
		hostile    []byte
	}{
		{"101 negotiates permessage-deflate", "permessage-deflate", compressed},
		{"compressed frame without an extension", "", compressed},
		{"masked server frame", "", masked("echo " + scrubSecret)},
		{"reserved opcode", "", wsFrame(true, 3, []byte("echo "+scrubSecret))},
		{"frame header cut off", "", []byte{0x81}},
	}
	tg := startScrubGateway(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/s/wshostile%d", i)
			tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
				c, rw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				fmt.Fprint(rw, wsSwitch(r))
				if tc.extensions != "" {
					fmt.Fprintf(rw, "Sec-WebSocket-Extensions: %s\r\n", tc.extensions)
				}
				fmt.Fprint(rw, "\r\n")
				rw.Write(wsFrame(true, 1, []byte("first "+scrubSecret)))
				rw.Write(tc.hostile)
				rw.Flush()
			})
			conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			br := bufio.NewReader(conn)
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			tc2 := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
			fmt.Fprintf(tc2, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", path, apiHost)
			tbr := bufio.NewReader(tc2)
			resp, err := http.ReadResponse(tbr, nil)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if tc.extensions != "" {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), codeUpstreamError) {
					t.Fatalf("upgrade answered %d %q, want 502 upstream_error", resp.StatusCode, body)
				}
				waitFor(t, 5*time.Second, "the log line naming the extension the gateway did not offer", func() bool {
					return strings.Contains(tg.logs.String(), "Sec-WebSocket-Extensions) that the upgrade request did not offer")
				})
				return
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %d", resp.StatusCode)
			}
			op, p, err := readWSFrame(tbr)
			if err != nil || op != 1 || string(p) != "first "+sameLengthMarker(len(scrubSecret)) {
				t.Fatalf("first frame %d %q, %v; want it scrubbed", op, p, err)
			}
			rest, _ := io.ReadAll(tbr)
			if len(rest) != 0 {
				t.Errorf("after the first frame the client received %d bytes (%q), want the connection ended with nothing of the frame the scrubber cannot read", len(rest), rest)
			}
		})
	}
}

// sameLengthMarker is the marker a KeepLength scrubber puts in place of
// n bytes.
func sameLengthMarker(n int) string {
	if n < len(secret.Redacted) {
		return strings.Repeat("*", n)
	}
	return secret.Redacted + strings.Repeat("*", n-len(secret.Redacted))
}
