package h1

import (
	"context"
	"io"
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

	// Not a refusal: the client leaves, is too slow, or is served.
	for _, tc := range []struct{ name, send string }{
		{"closes-before-a-byte", ""},
		// (A request line cut short by the end of the stream is read as
		// a whole line, and refused: it may be a half-close.)
		{"closes-mid-header", "GET /v1/x HTTP/1.1\r\nHost: a\r\nX-A: b"},
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
		{"times-out-mid-header", "GET /v1/x HTTP/1.1\r\nHost: a\r\n"},
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
