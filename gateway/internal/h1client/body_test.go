package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// closeWatch is a request body that records its Close.
type closeWatch struct {
	io.Reader
	closed atomic.Int64
}

func (b *closeWatch) Close() error { b.closed.Add(1); return nil }

// errAfter returns its bytes, then err.
type errAfter struct {
	b   []byte
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.b) == 0 {
		return 0, e.err
	}
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, nil
}

// postBody sends a POST to u with body rd (closed through a closeWatch)
// declared as n bytes, and returns the response's body; the body must
// have been closed once whatever happened.
func postBody(t *testing.T, c *Client, u string, rd io.Reader, n int64, h http.Header) (*http.Response, string, error) {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), "POST", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		r.Header[k] = v
	}
	cw := &closeWatch{Reader: rd}
	r.Body, r.ContentLength = cw, n
	resp, err := c.RoundTrip(r)
	if got := cw.closed.Load(); got != 1 {
		t.Errorf("request body closed %d times, want 1", got)
	}
	if r.Body != cw || r.ContentLength != n {
		t.Error("RoundTrip modified the request")
	}
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// TestBodyErrors: a body shorter or longer than its Content-Length, or
// one whose read fails, is an error (Transport's text for the lengths;
// the read error wrapped), nothing is sent, the body is closed, and the
// pooled connection is used by the next request as if nothing happened.
func TestBodyErrors(t *testing.T) {
	got := make(chan []byte, 4)
	var o *rawOrigin
	o = startRawOrigin(t, nil, serveFixed(&o, got, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := newClient(t)
	u := "http://" + o.addr + "/up"
	ok := func() {
		t.Helper()
		if _, body, err := postBody(t, c, u, strings.NewReader("hello"), 5, nil); err != nil || body != "ok" {
			t.Fatalf("%q %v", body, err)
		}
		if req := <-got; !bytes.HasSuffix(req, []byte("\r\n\r\nhello")) {
			t.Fatalf("origin got %q", req)
		}
	}
	ok()
	sentinel := errors.New("client went away")
	for _, tc := range []struct {
		name string
		rd   io.Reader
		n    int64
		want string
	}{
		{"shorter", strings.NewReader("hell"), 5, "http: ContentLength=5 with Body length 4"},
		{"empty", strings.NewReader(""), 5, "http: ContentLength=5 with Body length 0"},
		{"longer", strings.NewReader("hello!"), 5, "http: ContentLength=5 with Body length 6 or more"},
		{"much longer", strings.NewReader(strings.Repeat("x", 3*maxBody)), maxBody, "with Body length 16385 or more"},
		{"read error mid-way", &errAfter{b: []byte("he"), err: sentinel}, 5, "client went away"},
		{"read error at the end", &errAfter{b: []byte("hello"), err: sentinel}, 5, "client went away"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := postBody(t, c, u, tc.rd, tc.n, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if _, isRead := tc.rd.(*errAfter); isRead && !errors.Is(err, sentinel) {
				t.Errorf("error %v does not wrap the body's", err)
			}
			select {
			case req := <-got:
				t.Fatalf("the origin received %q", req)
			default:
			}
			ok() // on the same connection
			if n := o.conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// TestBodyRetry: a request with a body whose reused connection the
// server closes on reading it, unanswered, is sent again, body and all,
// only if Transport would replay it: a POST without an idempotency key
// is not (the server may have acted on it); one with a key, and a GET
// with a body, are.
func TestBodyRetry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		h      http.Header
		retry  bool
	}{
		{"POST", "POST", nil, false},
		{"PATCH", "PATCH", nil, false},
		{"POST with Idempotency-Key", "POST", http.Header{"Idempotency-Key": {"k"}}, true},
		{"POST with X-Idempotency-Key", "POST", http.Header{"X-Idempotency-Key": {"k"}}, true},
		{"GET with a body", "GET", nil, true},
		{"POST without a body", "POST", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 4)
			o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
				req, err := readRequest(br)
				if err != nil {
					return
				}
				got <- req
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				req, err = readRequest(br) // the second: closed unanswered
				if err == nil {
					got <- req
				}
			})
			c := newClient(t)
			body := "payload"
			if tc.name == "POST without a body" {
				body = ""
			}
			send := func() (string, error) {
				r, _ := http.NewRequestWithContext(t.Context(), tc.method, "http://"+o.addr+"/", nil)
				if body != "" {
					r.Body, r.ContentLength = io.NopCloser(struct{ io.Reader }{strings.NewReader(body)}), int64(len(body))
				}
				for k, v := range tc.h {
					r.Header[k] = v
				}
				resp, err := c.RoundTrip(r)
				if err != nil {
					return "", err
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(b), err
			}
			if b, err := send(); err != nil || b != "ok" {
				t.Fatalf("first request: %q %v", b, err)
			}
			<-got
			b, err := send()
			if tc.retry != (err == nil) {
				t.Fatalf("second request: %q %v; want retried=%v", b, err, tc.retry)
			}
			want := 1
			if tc.retry {
				want = 2
			}
			if n := o.conns.Load(); n != int64(want) {
				t.Errorf("%d connections, want %d", n, want)
			}
			for i := range want {
				select {
				case req := <-got:
					if !bytes.HasSuffix(req, []byte("\r\n\r\n"+body)) {
						t.Errorf("send %d: origin got %q", i, req)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("send %d never reached the origin", i)
				}
			}
		})
	}
}

// TestEarlyAnswer: a server that answers a request with a body before
// reading it — a 413 and a close, the unread body making its kernel
// reset the connection — gives the client its answer or an error, never
// a hang (the request fits in the sockets' buffers: the write completes
// without the server reading), and the connection is not pooled. A body
// of maxBody, fresh and reused connections.
func TestEarlyAnswer(t *testing.T) {
	for _, keepReading := range []bool{false, true} {
		var o *rawOrigin
		o = startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
			for {
				var head bytes.Buffer
				for {
					line, err := br.ReadString('\n')
					head.WriteString(line)
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				if strings.Contains(head.String(), "/warm") {
					io.CopyN(io.Discard, br, 2)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					continue
				}
				io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
				if keepReading {
					// Waits for the client to close.
					io.Copy(io.Discard, br)
					o.closed.Add(1)
				}
				return // closed with the body unread: a reset
			}
		})
		c := newClient(t)
		for i := range 6 {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			if i%2 == 1 {
				if _, body, err := postBody(t, c, "http://"+o.addr+"/warm", strings.NewReader("ab"), 2, nil); err != nil || body != "ok" {
					t.Fatalf("warm-up: %q %v", body, err)
				}
			}
			r, _ := http.NewRequestWithContext(ctx, "POST", "http://"+o.addr+"/upload", nil)
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(strings.Repeat("u", maxBody))), maxBody
			resp, err := c.RoundTrip(r)
			if ctx.Err() != nil {
				t.Fatalf("request %d hung: %v", i, err)
			}
			if err != nil {
				t.Logf("request %d (keep reading %v): %v", i, keepReading, err)
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 413 || string(b) != "big" {
					t.Errorf("request %d: %s %q", i, resp.Status, b)
				}
			}
			cancel()
			if c.Idle() != 0 {
				t.Errorf("request %d: the connection was pooled", i)
			}
		}
		if keepReading {
			poll.True(t, 5*time.Second, "the connections closed", func() bool { return o.closed.Load() == o.conns.Load() })
		}
	}
}

// TestBodyBoundary: a body of maxBody is sent by the client, one of
// maxBody+1 by Fallback, unread.
func TestBodyBoundary(t *testing.T) {
	var o *rawOrigin
	o = startRawOrigin(t, nil, serveFixed(&o, nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c := newClient(t)
	var fell atomic.Int64
	c.Fallback = rtFunc(func(r *http.Request) (*http.Response, error) {
		fell.Add(1)
		r.Body.Close()
		return nil, errors.New("fallback")
	})
	u := "http://" + o.addr + "/"
	if _, body, err := postBody(t, c, u, strings.NewReader(strings.Repeat("a", maxBody)), maxBody, nil); err != nil || body != "ok" || fell.Load() != 0 {
		t.Fatalf("maxBody: %q %v, fallback used %d times", body, err, fell.Load())
	}
	rw := &readWatch{r: strings.NewReader(strings.Repeat("a", maxBody+1))}
	if _, _, err := postBody(t, c, u, rw, maxBody+1, nil); err == nil || fell.Load() != 1 || rw.read.Load() {
		t.Fatalf("maxBody+1: %v, fallback used %d times, body read %v", err, fell.Load(), rw.read.Load())
	}
}

// TestNotSent: when no connection can be had for a request with a body,
// the error wraps the dial's and carries a copy of the request whose
// body replays what was read (the gateway sends it to HTTP/2 that way);
// the request itself is not modified.
func TestNotSent(t *testing.T) {
	sentinel := errors.New("speaks HTTP/2 only")
	c := newClient(t)
	c.Dial = func(context.Context, string, string) (net.Conn, error) { return nil, sentinel }
	r, _ := http.NewRequest("PUT", "http://a.test/x", nil)
	r.Header.Set("X-A", "1")
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader("the body")), 8
	_, err := c.RoundTrip(r)
	ns, ok := errors.AsType[*NotSentError](err)
	if !ok || !errors.Is(err, sentinel) || err.Error() != sentinel.Error() {
		t.Fatalf("error %v (%T), want a NotSentError wrapping the dial's", err, err)
	}
	r2 := ns.Request
	if r2 == r || r2.Method != "PUT" || r2.URL != r.URL || r2.Header.Get("X-A") != "1" || r2.ContentLength != 8 {
		t.Fatalf("copy %+v", r2)
	}
	for range 2 {
		b, err := io.ReadAll(r2.Body)
		if err != nil || string(b) != "the body" {
			t.Fatalf("replayed body %q %v", b, err)
		}
		if r2.Body, err = r2.GetBody(); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := io.ReadAll(r.Body); len(b) != 0 {
		t.Errorf("the original body was not read: %q left", b)
	}
	// Without a body: the dial's error as it is.
	r, _ = http.NewRequest("GET", "http://a.test/x", nil)
	if _, err := c.RoundTrip(r); err != sentinel {
		t.Errorf("bodiless: %v, want the dial's error", err)
	}
}

// FuzzSameBytesAsTransport is TestSameBytesAsTransport for any method,
// path, field value and body: whatever request the client sends itself,
// the upstream receives the bytes net/http's Transport sends for it.
func FuzzSameBytesAsTransport(f *testing.F) {
	f.Add("POST", "/v1/chat/completions", "application/json", json1k, false)
	f.Add("PUT", "/o/a%2Fb?x=1&y", "", "bin\x00\xff\r\n\r\n", true)
	f.Add("PATCH", "/p", "k1", `{"op":"replace"}`, false)
	f.Add("DELETE", "/d", "", "", false)
	f.Add("GET", "//a//b/", "  spaced  ", "q", true)
	f.Add("", "/", "", "", false)
	f.Add("HEAD", "/h", "x", "body on a HEAD", false)
	f.Add("PROPFIND", "/dav", "1", "<x/>", true)
	got := make(chan []byte, 4)
	var o *rawOrigin
	o = startRawOriginF(f, serveFixed(&o, got, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	tr := &http.Transport{DisableCompression: true}
	f.Cleanup(tr.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, method, path, value, body string, mem bool) {
		if len(body) > maxBody {
			body = body[:maxBody]
		}
		if path != "" && path[0] != '/' {
			path = "/" + path // else part of the address
		}
		build := func() *http.Request {
			r, err := http.NewRequest(method, "http://"+o.addr+path, nil)
			if err != nil {
				return nil
			}
			r.Header["User-Agent"] = []string{""}
			r.Header["X-Value"] = []string{value}
			if method == "PATCH" || method == "POST" {
				r.Header["Idempotency-Key"] = []string{value}
			}
			if body != "" {
				var rd io.Reader = struct{ io.Reader }{strings.NewReader(body)}
				if mem {
					rd = strings.NewReader(body)
				}
				r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
			}
			return r
		}
		r := build()
		if r == nil {
			return
		}
		if _, ok := eligible(r); !ok {
			return
		}
		c := &Client{Dial: (&net.Dialer{}).DialContext, Fallback: failRT{t}}
		defer c.CloseIdleConnections()
		send := func(rt http.RoundTripper, r *http.Request) []byte {
			resp, err := rt.RoundTrip(r)
			if err != nil {
				t.Fatalf("%T: %v", rt, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			select {
			case req := <-got:
				return req
			case <-time.After(30 * time.Second):
				t.Fatal("the origin recorded no request")
				return nil
			}
		}
		want, have := send(tr, build()), send(c, r)
		if !bytes.Equal(want, have) {
			t.Errorf("upstream received\n%q\nwant (Transport)\n%q", have, want)
		}
	})
}

// TestBodyArrived: a response body reports Arrived (the gateway then
// reads its first bytes without arming the header timer) only when the
// rest of it is in the connection's buffer: a small answer written at
// once, as the common API answer comes, is; one whose body the origin
// holds back is not until it was read to its end; and one read by
// ReadResponse (chunked here) is not before its end, since nothing says
// what it holds.
func TestBodyArrived(t *testing.T) {
	release := make(chan struct{})
	o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRequest(br)
			if err != nil {
				return
			}
			switch {
			case bytes.Contains(req, []byte(" /whole ")):
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
			case bytes.Contains(req, []byte(" /held ")):
				if _, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe"); err == nil {
					<-release
					_, err = io.WriteString(c, "llo")
				}
			default:
				_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
			}
			if err != nil {
				return
			}
		}
	})
	c := newClient(t)
	arrived := func(r io.Reader) bool { a, ok := r.(interface{ Arrived() bool }); return ok && a.Arrived() }
	for _, tc := range []struct {
		path   string
		before bool
	}{{"/whole", true}, {"/held", false}, {"/chunked", false}} {
		r, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+o.addr+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.RoundTrip(r)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if got := arrived(resp.Body); got != tc.before {
			t.Errorf("%s: Arrived() = %v before the body was read, want %v", tc.path, got, tc.before)
		}
		if tc.path == "/held" {
			close(release)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != "hello" {
			t.Fatalf("%s: body %q, %v", tc.path, b, err)
		}
		if !arrived(resp.Body) {
			t.Errorf("%s: not Arrived() at the body's end", tc.path)
		}
		resp.Body.Close()
		if arrived(resp.Body) {
			t.Errorf("%s: Arrived() after Close", tc.path)
		}
	}
}
