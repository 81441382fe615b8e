package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBothLengthsCloseConnection is the class "a request with both
// Content-Length and Transfer-Encoding" through each kind of HTTP/1
// request the gateway serves: in an intercepted tunnel, and absolute-form
// plain-HTTP on the proxy listener, both read by the gateway's HTTP/1.1
// server (gateway/internal/h1). RFC 9112 §6.1: processed by its
// Transfer-Encoding, such a request is the last of its connection. Every
// request's body is framed by its chunks (the origin reads "hello",
// never the Content-Length's bytes); after the answer the connection
// closes exactly when both fields came, and otherwise serves the next
// request. Before the proxy listener was served by h1, net/http's server
// kept its connection (Go 1.26 lacks golang/go#80942's fix), and kept
// an HTTP/1.0 keep-alive one whose body it framed by Content-Length.
func TestBothLengthsCloseConnection(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "body=%q err=%v", b, err)
	})
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	const plainHost = "plain.origin.test"
	port := portOf(plain.Listener.Addr())
	pol := strings.Replace(testPolicy, "\ncredentials:\n", fmt.Sprintf("\n  plain:\n    hosts: [%s]\n    ports: [%s]\n    allow_private: true\ncredentials:\n", plainHost, port), 1)
	pol = strings.Replace(pol, "\nrules:\n", "\nrules:\n  - {name: plain, from: local, to: plain, inject: {credential: token, as: bearer}, plaintext: true}\n", 1)
	tg := startEdgeGatewayPolicy(t, h, nil, pol, fmt.Sprintf("%q: %q", plainHost+":"+port, plain.Listener.Addr().String()))

	const chunked = "5\r\nhello\r\n0\r\n\r\n"
	tests := []struct {
		name   string
		fields string
		body   string
		ok     bool // answered 200 with the body "hello"; else refused
		closes bool // RFC 9112 §6.1
		http10 bool // sent as HTTP/1.0
	}{
		{"Content-Length then Transfer-Encoding", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", chunked, true, true, false},
		{"Transfer-Encoding then Content-Length", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", chunked, true, true, false},
		{"lower case", "content-length: 3\r\ntransfer-encoding: chunked\r\n", chunked, true, true, false},
		{"chunked, identity and Content-Length", "Content-Length: 3\r\nTransfer-Encoding: chunked, identity\r\n", chunked, false, true, false},
		{"Content-Length twice, one value", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello", true, false, false},
		{"only Transfer-Encoding", "Transfer-Encoding: chunked\r\n", chunked, true, false, false},
		{"only Content-Length", "Content-Length: 5\r\n", "hello", true, false, false},
		// HTTP/1.0 has no Transfer-Encoding: Go frames the body by its
		// Content-Length, and the connection must close (§6.1).
		{"HTTP/1.0 keep-alive, Transfer-Encoding and Content-Length", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n", "hello", true, true, true},
	}
	type server struct {
		name string
		dial func(t *testing.T) (net.Conn, *bufio.Reader)
		head func(path string) string // request line and Host field
	}
	servers := []server{
		{"intercepted", func(t *testing.T) (net.Conn, *bufio.Reader) { return h1TunnelTo(t, tg, apiHost) },
			func(path string) string { return "POST " + path + " HTTP/1.1\r\nHost: " + apiHost + "\r\n" }},
		{"plain proxy", func(t *testing.T) (net.Conn, *bufio.Reader) {
			c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			return c, bufio.NewReader(c)
		}, func(path string) string {
			return fmt.Sprintf("POST http://%s:%s%s HTTP/1.1\r\nHost: %s:%s\r\n", plainHost, port, path, plainHost, port)
		}},
	}
	for _, s := range servers {
		for _, tt := range tests {
			t.Run(s.name+"/"+tt.name, func(t *testing.T) {
				req := s.head("/framing") + tt.fields + "\r\n" + tt.body
				if tt.http10 {
					req = strings.Replace(req, " HTTP/1.1\r\n", " HTTP/1.0\r\n", 1)
				}
				wantClose := tt.closes
				c, br := s.dial(t)
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				resp, body := readResp(t, br, "POST")
				switch {
				case tt.ok && (resp.StatusCode != http.StatusOK || body != `body="hello" err=<nil>`):
					t.Fatalf("%s %q, want 200 and the chunks' body", resp.Status, body)
				case !tt.ok && resp.StatusCode < 400:
					t.Fatalf("%s %q, want a refusal", resp.Status, body)
				}
				if resp.Close != wantClose {
					t.Errorf("Connection: close %v, want %v", resp.Close, wantClose)
				}
				if wantClose {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if n, err := io.Copy(io.Discard, br); err != nil {
						t.Fatalf("the connection did not close after the answer: %d bytes, %v", n, err)
					}
					return
				}
				if _, err := io.WriteString(c, strings.Replace(s.head("/next"), "POST", "GET", 1)+"\r\n"); err != nil {
					t.Fatal(err)
				}
				if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusOK {
					t.Fatalf("the next request on the kept connection: %s %q", resp.Status, body)
				}
			})
		}
	}
}
