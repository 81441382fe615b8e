package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// A connection idle for idleHandoff is handed to a new goroutine, which
// waits for the socket to become readable (under TLS: below the record
// layer) and then serves on. These tests shorten the handoff delay and
// wait for the server's handoff count, so every request they send after
// a wait arrives on a handed-off connection.

// echoHandler answers with the method, path, the tunnel's context value
// and the body it read.
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s %s ctx=%v body=%q", r.Method, r.URL.Path, r.Context().Value(ctxKey{}), b)
})

func handoffServer() *Server {
	return &Server{
		Limits:       Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second},
		handoffAfter: 20 * time.Millisecond,
	}
}

// waitHandoffs waits until the server handed off n idle waits in all.
func waitHandoffs(t *testing.T, s *Server, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d idle handoffs", n), func() bool { return s.handoffs.Load() >= n })
}

func expectBody(t *testing.T, br *bufio.Reader, method, want string) {
	t.Helper()
	resp, body := readResp(t, br, method)
	if resp.StatusCode != 200 || body != want || resp.Close {
		t.Fatalf("%s: %s %q close=%v, want 200 %q", method, resp.Status, body, resp.Close, want)
	}
}

func TestIdleHandoffServesOn(t *testing.T) {
	s := handoffServer()
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	waitHandoffs(t, s, 1)

	// Pipelined requests in one write, on the handed-off connection.
	fmt.Fprint(c, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "POST", `POST /b ctx=tunnel body="hi"`)
	expectBody(t, br, "GET", `GET /c ctx=tunnel body=""`)
	waitHandoffs(t, s, 2)

	// A request in two writes.
	fmt.Fprint(c, "GET /d HTTP/1.1\r\nHo")
	fmt.Fprint(c, "st: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /d ctx=tunnel body=""`)
	waitHandoffs(t, s, 3)

	fmt.Fprint(c, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); !resp.Close {
		t.Fatal("Connection: close not honoured")
	}
	expectClosed(t, c, br, 5*time.Second)
	waitForgotten(t, s)
}

// TestIdleHandoffRequestBeforeWait: a request that arrives after the
// idle read timed out but before the handed-off goroutine waits on the
// socket is served at once: the wait looks at the socket first (the
// poller forgets a readiness it saw before the wait began).
func TestIdleHandoffRequestBeforeWait(t *testing.T) {
	s := handoffServer()
	client := make(chan net.Conn, 1)
	var once sync.Once
	s.beforeIdleWait = func() {
		once.Do(func() {
			c := <-client
			fmt.Fprint(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
		})
	}
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	client <- c
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	// Not left waiting until the idle timeout closes the connection.
	expectBody(t, br, "GET", `GET /b ctx=tunnel body=""`)
}

// TestIdleHandoffClientCloses: a client that closes a handed-off
// connection ends it (the readiness wait returns, the read sees the end).
func TestIdleHandoffClientCloses(t *testing.T) {
	s := handoffServer()
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	waitHandoffs(t, s, 1)
	_ = c.Close()
	waitForgotten(t, s)
}

// TestIdleHandoffKeepsIdleTimeout: the handed-off wait ends at the idle
// timeout counted from the end of the last request, not later and not at
// the handoff.
func TestIdleHandoffKeepsIdleTimeout(t *testing.T) {
	s := handoffServer()
	s.Limits.IdleTimeout = 300 * time.Millisecond
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	sent := time.Now()
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	waitHandoffs(t, s, 1)
	expectClosed(t, c, br, 5*time.Second)
	// The server set the idle deadline after it read the request, so no
	// earlier than IdleTimeout after it was sent.
	if d := time.Since(sent); d < s.Limits.IdleTimeout {
		t.Fatalf("closed %s after the request, before the %s idle timeout", d, s.Limits.IdleTimeout)
	}
}

// TestIdleHandoffShutdown: Shutdown closes a handed-off idle connection
// at once and does not wait for it.
func TestIdleHandoffShutdown(t *testing.T) {
	s := handoffServer()
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	waitHandoffs(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n := s.Shutdown(ctx); n != 0 {
		t.Fatalf("Shutdown closed %d busy connections, want 0", n)
	}
	expectClosed(t, c, br, 3*time.Second)
}

// holdConn is a client connection whose writes can be held back: with
// hold set, the next Write is kept; with cut set, the next Write sends
// what was kept and its own first cut bytes in one write to the socket,
// and keeps the rest for release.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	cut  int
	held []byte
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.hold:
		h.held, h.hold = append([]byte(nil), p...), false
		return len(p), nil
	case h.cut > 0 && len(p) > h.cut:
		out := append(h.held, p[:h.cut]...)
		h.held, h.cut = append([]byte(nil), p[h.cut:]...), 0
		if _, err := h.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return h.Conn.Write(p)
}

func (h *holdConn) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.Conn.Write(h.held)
	h.held = nil
	return err
}

// startTLSServer serves h with s over TLS (http/1.1) on a loopback
// listener until the test ends, and returns a client dialer.
func startTLSServer(t *testing.T, s *Server, h http.Handler) func() (*tls.Conn, *holdConn, *bufio.Reader) {
	t.Helper()
	ca, err := testpki.NewAuthority("h1 test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("h1.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx := context.WithValue(context.Background(), ctxKey{}, "tunnel")
	srvCfg := &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"http/1.1"}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, srvCfg)
				hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := tc.HandshakeContext(hctx); err != nil {
					_ = tc.Close()
					return
				}
				go s.Serve(ctx, tc, h)
			}()
		}
	}()
	return func() (*tls.Conn, *holdConn, *bufio.Reader) {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		hc := &holdConn{Conn: raw}
		c := tls.Client(hc, &tls.Config{ServerName: "h1.test", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c, hc, bufio.NewReader(c)
	}
}

// TestIdleHandoffTLS: under TLS the handed-off wait is on the socket below
// the record layer. Requests still arrive whole when they are pipelined in
// one record, when the rest of a pipelined request stays inside the TLS
// layer after the server's buffer took the one before it, and when a
// record arrived only in part before the handoff.
func TestIdleHandoffTLS(t *testing.T) {
	s := handoffServer()
	s.Limits.MaxHeaderBytes = 8192
	dialTLS := startTLSServer(t, s, echoHandler)
	c, hc, br := dialTLS()
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /a ctx=tunnel body=""`)
	waitHandoffs(t, s, 1)

	// Two requests in one record.
	fmt.Fprint(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /b ctx=tunnel body=""`)
	expectBody(t, br, "GET", `GET /c ctx=tunnel body=""`)
	waitHandoffs(t, s, 2)

	// One record: a request of exactly the server's 4 KiB read buffer,
	// then another, which stays in the TLS layer's buffer while the first
	// is served.
	head := "GET /d HTTP/1.1\r\nHost: x\r\nX-Pad: "
	tail := "\r\n\r\n"
	first := head + strings.Repeat("p", 4096-len(head)-len(tail)) + tail
	fmt.Fprint(c, first+"GET /e HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /d ctx=tunnel body=""`)
	expectBody(t, br, "GET", `GET /e ctx=tunnel body=""`)
	waitHandoffs(t, s, 3)

	// A record with a request, and in the same write to the socket the
	// first 20 bytes of the next one: once the first is answered, the
	// wait times out with that record incomplete in the TLS layer and is
	// handed off; the rest arrives on the handed-off connection.
	before := s.handoffs.Load()
	hc.mu.Lock()
	hc.hold, hc.cut = true, 20
	hc.mu.Unlock()
	fmt.Fprint(c, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
	fmt.Fprint(c, "GET /g HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br, "GET", `GET /f ctx=tunnel body=""`)
	waitHandoffs(t, s, before+1)
	if err := hc.release(); err != nil {
		t.Fatal(err)
	}
	expectBody(t, br, "GET", `GET /g ctx=tunnel body=""`)
}

// TestFirstRequestNotHandedOff: the first request is awaited on the
// goroutine Serve runs on, which has not grown a stack yet.
func TestFirstRequestNotHandedOff(t *testing.T) {
	s := handoffServer()
	s.Limits.ReadHeaderTimeout = 200 * time.Millisecond
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	expectClosed(t, c, br, 5*time.Second)
	if n := s.handoffs.Load(); n != 0 {
		t.Fatalf("%d handoffs while waiting for the first request, want 0", n)
	}
}

// waitForgotten waits until s no longer tracks any connection.
func waitForgotten(t *testing.T, s *Server) {
	t.Helper()
	waitFor(t, "the connection forgotten", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
}
