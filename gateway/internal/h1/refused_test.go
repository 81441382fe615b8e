package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRefusedCallback: Server.Refused is called once for every request
// the server answers itself (with the connection's context, the status
// and, once the request parsed, its method and path) and what it returns
// is in the answer; it is not called when the client goes away or is too
// slow, nor for a request the handler serves.
func TestRefusedCallback(t *testing.T) {
	var mu sync.Mutex
	var calls []Refusal
	var ctxOK []bool
	s := &Server{
		Limits: Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second},
		Refused: func(ctx context.Context, r Refusal) Answer {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, r)
			ctxOK = append(ctxOK, ctx.Value(ctxKey{}) == "tunnel")
			return Answer{
				Header: http.Header{"Content-Type": {"application/json"}, "X-Reason": {"refused\r\nX-Injected: 1"}, "Connection": {"keep-alive"}},
				Body:   []byte(`{"code":"refused"}`),
			}
		},
	}
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	take := func() ([]Refusal, []bool) {
		mu.Lock()
		defer mu.Unlock()
		c, o := calls, ctxOK
		calls, ctxOK = nil, nil
		return c, o
	}

	for _, tc := range []struct {
		name, send   string
		status       int
		method, path string
	}{
		{"garbage", "NOT HTTP AT ALL\r\n\r\n", 400, "", ""},
		{"bad-escape", "GET /v1/%x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "", ""},
		{"raw-del", "GET /v1/\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "", ""},
		{"bare-lf-garbage", "\x01\x02\n\n", 400, "", ""},
		{"missing-host", "GET /m HTTP/1.1\r\n\r\n", 400, "GET", "/m"},
		// The target names a host, but HTTP/1.1 wants the field too (RFC
		// 9112 §3.2; net/http refuses it): http.ReadRequest deletes the
		// field, the server's framing scan notes it.
		{"absolute-form-missing-host", "GET http://a/m HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "GET", "/m"},
		{"two-hosts", "GET /t HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "", ""}, // http.ReadRequest refuses it
		{"bad-header-value", "GET /v HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", 400, "", ""},
		{"bad-header-name", "GET /n HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", 400, "GET", "/n"}, // checkHeaderFields refuses it
		{"bad-version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "", ""},
		{"expect-other", "POST /e HTTP/1.1\r\nHost: a\r\nExpect: x\r\nContent-Length: 1\r\n\r\nx", 417, "POST", "/e"},
		{"oversized", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 16<<10) + "\r\n\r\n", 431, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dial(t, addr)
			go func() { _, _ = io.WriteString(c, tc.send) }()
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("%s close=%v, want %d and close", resp.Status, resp.Close, tc.status)
			}
			if body != `{"code":"refused"}` || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Injected") != "" ||
				!strings.HasPrefix(resp.Header.Get("X-Reason"), "refused") {
				t.Fatalf("answer %v %q, want the callback's header and body (and no field split off a value)", resp.Header, body)
			}
			expectClosed(t, c, br, 5*time.Second)
			got, ok := take()
			if len(got) != 1 {
				t.Fatalf("Refused called %d times, want 1: %+v", len(got), got)
			}
			r := got[0]
			if r.Status != tc.status || r.Reason == "" || r.Method != tc.method || r.Path != tc.path || !ok[0] || r.RemoteAddr != c.LocalAddr().String() || r.TLS != nil {
				t.Fatalf("Refused(%+v), connection context %v; want status %d, method %q, path %q, Serve's context and the client's address %s", r, ok[0], tc.status, tc.method, tc.path, c.LocalAddr())
			}
		})
	}

	// Not a refusal: the client leaves or is too slow before a request
	// starts, or is served. (A request it started and left unfinished is
	// TestRefusedCutShort's.)
	for _, tc := range []struct{ name, send string }{
		{"closes-before-a-byte", ""},
		{"served", "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
		{"served-absolute-form", "GET http://a/ok HTTP/1.1\r\nhost: b\r\nConnection: close\r\n\r\n"},
		// A CONNECT names its authority in the target: no Host field
		// needed (net/http's rule too).
		{"served-connect-without-host", "CONNECT a:443 HTTP/1.1\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dial(t, addr)
			_, _ = io.WriteString(c, tc.send)
			if strings.HasPrefix(tc.name, "served") {
				if _, body := readResp(t, br, "GET"); body != "ok" {
					t.Fatalf("body %q", body)
				}
			}
			_ = c.Close()
			waitForgotten(t, s)
			if got, _ := take(); len(got) != 0 {
				t.Fatalf("Refused called for a client that went away or was served: %+v", got)
			}
		})
	}
	for _, tc := range []struct{ name, send string }{
		{"times-out-before-a-byte", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dial(t, addr)
			_, _ = io.WriteString(c, tc.send)
			expectClosed(t, c, br, 5*time.Second) // ReadHeaderTimeout ends it
			waitForgotten(t, s)
			if got, _ := take(); len(got) != 0 {
				t.Fatalf("Refused called for a client that was too slow: %+v", got)
			}
		})
	}
}

// TestRefusedCutShort: a request the client started (a byte of it) and
// did not finish the header block of is reported to
// Refused exactly once, with Cut saying how (closed, timeout), status 0
// and nothing answered — wherever the cut falls (in the request line, at
// its end, inside a field name, inside a value, after a field) and
// however the connection ends (TCP FIN; TLS with and without a
// close_notify). Before, whether a line was written depended on those:
// a cut inside the request line or a field name, or a TLS end without
// close_notify, was refused as a malformed request (400, written to no
// one), any other cut and every timeout were not reported at all.
func TestRefusedCutShort(t *testing.T) {
	var mu sync.Mutex
	var calls []Refusal
	s := &Server{
		Limits: Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second},
		Refused: func(_ context.Context, r Refusal) Answer {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, r)
			return Answer{}
		},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	addr := startServer(t, s, h)
	dialTLS := startTLSServer(t, s, h)
	cuts := []struct{ name, send string }{
		{"first-byte", "G"},
		{"in-request-line", "GET /v1/x HT"},
		{"after-request-line", "GET /v1/x HTTP/1.1\r\n"},
		{"in-field-name", "GET /v1/x HTTP/1.1\r\nHo"},
		{"in-field-value", "GET /v1/x HTTP/1.1\r\nHost: a"},
		{"after-a-field", "GET /v1/x HTTP/1.1\r\nHost: a\r\n"},
		{"after-a-request-served", "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/x HTTP/1.1\r\nHo"},
	}
	type end struct {
		name string
		// open returns the client connection (TLS or TCP) and how it ends:
		// close ends it at once; nil close waits for the read header
		// timeout.
		open func() (net.Conn, *bufio.Reader, func())
		cut  string
	}
	tcp := func() (net.Conn, *bufio.Reader, func()) {
		c, br := dial(t, addr)
		return c, br, func() { _ = c.Close() }
	}
	tlsNotify := func() (net.Conn, *bufio.Reader, func()) {
		c, _, br := dialTLS()
		return c, br, func() { _ = c.Close() } // sends close_notify
	}
	tlsNoNotify := func() (net.Conn, *bufio.Reader, func()) {
		c, hc, br := dialTLS()
		return c, br, func() { _ = hc.Conn.Close() } // the socket only
	}
	ends := []end{
		{"tcp-close", tcp, CutClosed},
		{"tls-close-notify", tlsNotify, CutClosed},
		{"tls-close-without-notify", tlsNoNotify, CutClosed},
		{"tcp-timeout", tcp, CutTimeout},
		{"tls-timeout", tlsNotify, CutTimeout},
	}
	for _, e := range ends {
		for _, cut := range cuts {
			t.Run(e.name+"/"+cut.name, func(t *testing.T) {
				mu.Lock()
				calls = nil
				mu.Unlock()
				c, br, closeIt := e.open()
				if _, err := io.WriteString(c, cut.send); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(cut.name, "served") {
					if _, body := readResp(t, br, "GET"); body != "ok" {
						t.Fatalf("body %q", body)
					}
				}
				if e.cut == CutClosed {
					closeIt()
				} else {
					// Nothing is answered: the connection just ends.
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if b, err := br.ReadByte(); err == nil {
						t.Fatalf("the server answered a request cut short (first byte %q)", b)
					}
					closeIt()
				}
				waitFor(t, "Refused called", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(calls) > 0
				})
				waitForgotten(t, s)
				mu.Lock()
				got := calls
				mu.Unlock()
				if len(got) != 1 {
					t.Fatalf("Refused called %d times, want once: %+v", len(got), got)
				}
				if r := got[0]; r.Cut != e.cut || r.Status != 0 || r.Method != "" || r.Path != "" || r.Reason == "" {
					t.Fatalf("Refused(%+v), want Cut %q, status 0, no method or path, a reason", r, e.cut)
				}
			})
		}
	}
}

// TestRefusedNotForOwnClose: a header block cut because the server
// closed the connection itself (Shutdown past its deadline, as the
// gateway's own closes of a tunnel) is not reported as the client's cut.
func TestRefusedNotForOwnClose(t *testing.T) {
	var mu sync.Mutex
	var calls []Refusal
	s := &Server{
		Limits: Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second},
		Refused: func(_ context.Context, r Refusal) Answer {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, r)
			return Answer{}
		},
	}
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c, br := dial(t, addr)
	if _, err := io.WriteString(c, "GET /v1/x HTTP/1.1\r\nHo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	s.Shutdown(ctx)
	expectClosed(t, c, br, 5*time.Second)
	waitForgotten(t, s)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 0 {
		t.Fatalf("Refused called for a connection the server closed: %+v", calls)
	}
}
