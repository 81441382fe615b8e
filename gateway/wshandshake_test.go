package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// wsKey is a valid Sec-WebSocket-Key (RFC 6455 §1.3's example).
const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// wsAccept is the Sec-WebSocket-Accept that answers key.
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsSwitch is the head of a test origin's 101 to the upgrade request r,
// without the blank line that ends it (a caller may add fields).
func wsSwitch(r *http.Request) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		wsAccept(r.Header.Get("Sec-Websocket-Key")) + "\r\n"
}

// TestWebSocketHandshakeRequired is the class test for a 101 that is not
// a WebSocket handshake: the gateway relays bytes after a 101 unread, so
// an upstream that answers any Upgrade field with 101 and goes on reading
// HTTP requests (the outside review's origin) received "DELETE
// /v1/admin/everything" from a client whose one rule allowed GET on
// /v1/repos/acme/*: a request no rule decided and no audit line records.
// A WebSocket upgrade now needs one valid Sec-WebSocket-Key (400
// upgrade_not_allowed, nothing sent upstream), and the upstream's 101 the
// Sec-WebSocket-Accept that answers it (502 upstream_error, the
// connection dropped): each spelling of a missing, wrong or repeated key
// or accept, against an origin that then reads requests, must leave the
// origin without the request the client sends after it.
func TestWebSocketHandshakeRequired(t *testing.T) {
	tg := startGateway(t)
	var mu sync.Mutex
	var smuggled []string
	tg.origin.route("/ws-naive", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		key := r.Header.Get("Sec-Websocket-Key")
		switch r.URL.Query().Get("accept") {
		case "right":
			head += "Sec-WebSocket-Accept: " + wsAccept(key) + "\r\n"
		case "wrong":
			head += "Sec-WebSocket-Accept: " + wsAccept("AAAAAAAAAAAAAAAAAAAAAA==") + "\r\n"
		case "twice":
			head += "Sec-WebSocket-Accept: " + wsAccept(key) + "\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n"
		case "unpadded":
			head += "Sec-WebSocket-Accept: " + strings.TrimRight(wsAccept(key), "=") + "\r\n"
		}
		fmt.Fprint(rw, head+"\r\n")
		rw.Flush()
		for {
			req, err := http.ReadRequest(rw.Reader)
			if err != nil {
				return
			}
			mu.Lock()
			smuggled = append(smuggled, req.Method+" "+req.RequestURI)
			mu.Unlock()
			fmt.Fprint(rw, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
			rw.Flush()
		}
	})
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
	for _, tc := range []struct {
		name, accept, fields string
		wantStatus           int
		wantCode             string
	}{
		{"no Sec-WebSocket-Accept", "none", "Sec-WebSocket-Key: " + wsKey + "\r\n", 502, codeUpstreamError},
		{"an Accept for another key", "wrong", "Sec-WebSocket-Key: " + wsKey + "\r\n", 502, codeUpstreamError},
		{"the Accept twice", "twice", "Sec-WebSocket-Key: " + wsKey + "\r\n", 502, codeUpstreamError},
		{"the Accept without padding", "unpadded", "Sec-WebSocket-Key: " + wsKey + "\r\n", 502, codeUpstreamError},
		{"no Sec-WebSocket-Key", "right", "", 400, codeUpgradeNotAllowed},
		{"an empty key", "right", "Sec-WebSocket-Key: \r\n", 400, codeUpgradeNotAllowed},
		{"a key of 4 bytes", "right", "Sec-WebSocket-Key: dGVzdA==\r\n", 400, codeUpgradeNotAllowed},
		{"a key not base64", "right", "Sec-WebSocket-Key: not base64 at all!!!!!\r\n", 400, codeUpgradeNotAllowed},
		{"two keys", "right", "Sec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Key: " + wsKey + "\r\n", 400, codeUpgradeNotAllowed},
		{"the handshake (control)", "right", "Sec-WebSocket-Key: " + wsKey + "\r\n", 101, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tg.origin.all())
			mu.Lock()
			smuggled = nil
			mu.Unlock()
			conn, br := h1Tunnel(t, tg)
			fmt.Fprintf(conn, "GET /ws-naive?accept=%s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", tc.accept, apiHost, upgrade, tc.fields)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || resp.Header.Get(ReasonHeader) != tc.wantCode {
				t.Fatalf("got %s %q, want %d %q", resp.Status, resp.Header.Get(ReasonHeader), tc.wantStatus, tc.wantCode)
			}
			if tc.wantStatus != 101 {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if tc.wantStatus == 400 && len(tg.origin.all()) != before {
				t.Errorf("the refused upgrade reached the origin: %+v", tg.origin.all()[before:])
			}
			// The request the client sends next: decided and audited
			// as a request of its own, or never read; never relayed
			// unread to the origin's switched connection.
			fmt.Fprintf(conn, "DELETE /v1/admin/everything HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
			if tc.wantStatus == 101 {
				waitFor(t, 5*time.Second, "the control's bytes relayed", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(smuggled) == 1
				})
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(br, nil); err == nil { // the gateway's answer, or its close
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if len(smuggled) != 0 {
				t.Errorf("the origin read %q after the 101: a request no rule decided", smuggled)
			}
		})
	}
}
