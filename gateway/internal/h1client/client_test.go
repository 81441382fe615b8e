package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
)

// rawOrigin is an upstream on 127.0.0.1 that hands each accepted
// connection to serve, counts them, and counts those it saw closed by
// the client.
type rawOrigin struct {
	ln     net.Listener
	addr   string
	conns  atomic.Int64
	closed atomic.Int64 // connections whose read ended (the client closed)
}

// startRawOrigin serves each connection with serve; serve returns when it
// is done with the connection, which is then closed.
func startRawOrigin(t *testing.T, tlsConf *tls.Config, serve func(c net.Conn, br *bufio.Reader)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	o := &rawOrigin{ln: ln, addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return o
}

// readRequest reads one request (its head up to the blank line, then a
// body of its Content-Length) and returns its bytes; an error when the
// client closed the connection.
func readRequest(br *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	n := 0
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.Bytes(), err
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	_, err := io.CopyN(&b, br, int64(n))
	return b.Bytes(), err
}

// serveFixed answers every request on the connection with resp and sends
// the request heads it read to got. A HEAD request gets resp's head only,
// as from any HTTP server: bytes after a HEAD response are a hostile
// upstream's (TestUnsolicitedWhileIdle, TestHostileResponses), which
// net/http's Transport detects only when its read loop wins a race.
func serveFixed(o **rawOrigin, got chan<- []byte, resp string) func(net.Conn, *bufio.Reader) {
	head, _, _ := strings.Cut(resp, "\r\n\r\n")
	head += "\r\n\r\n"
	return func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRequest(br)
			if err != nil {
				(*o).closed.Add(1)
				return
			}
			if got != nil {
				got <- req
			}
			answer := resp
			if bytes.HasPrefix(req, []byte("HEAD ")) {
				answer = head
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	}
}

// failRT is a Fallback that must not be used.
type failRT struct{ t *testing.T }

func (f failRT) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("%s %s went to the fallback", r.Method, r.URL)
	return nil, errors.New("fallback")
}

func newClient(t *testing.T) *Client {
	d := &net.Dialer{}
	c := &Client{Dial: d.DialContext, Fallback: failRT{t}, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 4}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(t *testing.T, rt http.RoundTripper, ctx context.Context, method, u string) (*http.Response, string, error) {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header["User-Agent"] = []string{""}
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// json1k is a JSON request body of about 1 KiB, an LLM API call's shape.
var json1k = `{"model":"gpt-test","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 80) + `"}],"temperature":0.2}`

// TestSameBytesAsTransport: for each request the upstream receives
// exactly the bytes net/http's Transport (as the gateway configures it:
// keep-alive, no compression) sends for it.
func TestSameBytesAsTransport(t *testing.T) {
	// Room for a request sent twice (a retry), so that the origin never
	// blocks before answering: the test then fails on the bytes instead
	// of hanging.
	got := make(chan []byte, 4)
	var o *rawOrigin
	o = startRawOrigin(t, nil, serveFixed(&o, got, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	c := newClient(t)
	base := "http://" + o.addr
	tests := []struct {
		name   string
		method string
		url    string
		body   string // sent with its length; a reader not in memory unless mem
		mem    bool
		set    func(r *http.Request)
	}{
		{name: "plain GET", method: "GET", url: base + "/v1/x"},
		{name: "empty method", method: "", url: base + "/"},
		{name: "repeated headers", method: "GET", url: base + "/a", set: func(r *http.Request) {
			r.Header["Accept"] = []string{"a/b", "c/d"}
			r.Header["X-Multi"] = []string{"1", "2", "3"}
			r.Header.Set("Authorization", "Bearer tok")
		}},
		{name: "Host differs from URL host", method: "GET", url: base + "/h", set: func(r *http.Request) { r.Host = "api.example.test" }},
		{name: "odd query", method: "GET", url: base + "/q?a=%2F%2f&b=+x&c&&d=%25&e=%E2%82%AC"},
		{name: "encoded path", method: "GET", url: base + "/a%20b/c%2Fd/%7Euser"},
		{name: "double slash path", method: "GET", url: base + "//a//b/"},
		{name: "no path", method: "GET", url: base},
		{name: "HEAD", method: "HEAD", url: base + "/head"},
		{name: "OPTIONS *", method: "OPTIONS", url: base, set: func(r *http.Request) { r.URL.Path = "*" }},
		{name: "TRACE", method: "TRACE", url: base + "/t"},
		{name: "DELETE with idempotency key", method: "DELETE", url: base + "/d", set: func(r *http.Request) { r.Header.Set("Idempotency-Key", "k1") }},
		{name: "user agent kept", method: "GET", url: base + "/ua", set: func(r *http.Request) { r.Header.Set("User-Agent", "client/1.0") }},
		{name: "empty header value", method: "GET", url: base + "/e", set: func(r *http.Request) { r.Header["X-Empty"] = []string{""} }},
		{name: "Range", method: "GET", url: base + "/r", set: func(r *http.Request) { r.Header.Set("Range", "bytes=0-1") }},
		{name: "IPv4 host with port", method: "GET", url: base + "/p", set: func(r *http.Request) { r.Host = "127.0.0.1:8443" }},
		{name: "POST without a body", method: "POST", url: base + "/p0"},
		{name: "POST JSON", method: "POST", url: base + "/v1/chat/completions", body: json1k, set: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer sk-test")
			r.Header.Set("Content-Length", "1") // stale: Write uses ContentLength
		}},
		{name: "POST JSON, body in memory", method: "POST", url: base + "/v1/m", body: `{"a":1}`, mem: true},
		{name: "PUT", method: "PUT", url: base + "/objects/a%2Fb?x=1", body: "binary\x00\xff\r\n\r\nbody"},
		{name: "PATCH with idempotency key", method: "PATCH", url: base + "/p", body: `{"op":"replace"}`, set: func(r *http.Request) {
			r.Header.Set("Idempotency-Key", "key-1")
			r.Header["X-Idempotency-Key"] = []string{""}
		}},
		{name: "DELETE with a body", method: "DELETE", url: base + "/d", body: `{"ids":[1,2]}`},
		{name: "GET with a body", method: "GET", url: base + "/g", body: "q"},
		{name: "custom method", method: "PROPFIND", url: base + "/dav", body: "<x/>", set: func(r *http.Request) { r.Header.Set("Depth", "1") }},
		{name: "default user agent", method: "POST", url: base + "/ua", body: "x", set: func(r *http.Request) { delete(r.Header, "User-Agent") }},
		{name: "odd headers", method: "POST", url: base + "/odd", body: "x=1&y=2", set: func(r *http.Request) {
			r.Header["X-Empty"] = []string{""}
			r.Header["X-Spaces"] = []string{"  a  b  "}
			r.Header["X-Multi"] = []string{"1", "", "3"}
			r.Header["Transfer-Encoding"] = []string{"identity"} // not r.TransferEncoding: Write drops it
			r.Header["lowercase"] = []string{"kept as is"}
			r.Host = "api.example.test:8443"
		}},
		{name: "16 KiB body", method: "POST", url: base + "/big", body: strings.Repeat("z", maxBody)},
		// Cases of the request writer (write.go).
		{name: "IPv6 zone in Host", method: "GET", url: base + "/z", set: func(r *http.Request) { r.Host = "[fe80::1%en0]:8080" }},
		{name: "blank user agent", method: "PUT", url: base + "/ua", set: func(r *http.Request) { r.Header["User-Agent"] = []string{" \t "} }},
		{name: "forced empty query", method: "PATCH", url: base + "/q?"},
		{name: "lower-case excluded keys", method: "POST", url: base + "/lc", body: "abc", set: func(r *http.Request) {
			r.Header["content-length"] = []string{"3"}
			r.Header["host"] = []string{"h.test"}
			r.Header["Host"] = []string{"dropped.test"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send := func(rt http.RoundTripper) []byte {
				r, err := http.NewRequest(tt.method, tt.url, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tt.body != "" {
					// As the gateway's: a body that may block (Transport
					// then flushes the head first: the bytes are the
					// same), without GetBody.
					var rd io.Reader = struct{ io.Reader }{strings.NewReader(tt.body)}
					if tt.mem {
						rd = strings.NewReader(tt.body)
					}
					r.Body, r.ContentLength = io.NopCloser(rd), int64(len(tt.body))
				}
				r.Header["User-Agent"] = []string{""} // as forward sets it
				if tt.set != nil {
					tt.set(r)
				}
				resp, err := rt.RoundTrip(r)
				if err != nil {
					t.Fatal(err)
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
			want, have := send(tr), send(c)
			if !bytes.Equal(want, have) {
				t.Errorf("upstream received\n%q\nwant (Transport)\n%q", have, want)
			}
		})
	}
}

// TestFallback: requests the client does not send itself go to Fallback,
// with their body unread.
func TestFallback(t *testing.T) {
	var used atomic.Int64
	c := &Client{Fallback: rtFunc(func(*http.Request) (*http.Response, error) {
		used.Add(1)
		return nil, errors.New("fallback")
	})}
	for _, tc := range []struct {
		name string
		r    func() *http.Request
	}{
		{"body of unknown length", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", strings.NewReader("x"))
			r.ContentLength = -1
			return r
		}},
		{"body with ContentLength 0", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", strings.NewReader("x"))
			r.ContentLength = 0
			return r
		}},
		{"chunked", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", strings.NewReader("x"))
			r.TransferEncoding = []string{"chunked"}
			return r
		}},
		{"body larger than maxBody", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", strings.NewReader(strings.Repeat("x", maxBody+1)))
			return r
		}},
		{"length without a body", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", nil)
			r.ContentLength = 3
			return r
		}},
		{"trailer", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/", strings.NewReader("x"))
			r.Trailer = http.Header{"X-Sum": nil}
			return r
		}},
		{"a server's request (RequestURI set)", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.RequestURI = "/"
			return r
		}},
		{"bad method", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Method = "GE T"
			return r
		}},
		{"CONNECT", func() *http.Request { r, _ := http.NewRequest("CONNECT", "http://a.test/", nil); return r }},
		{"connection field", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Header.Set("Connection", "x-hop")
			return r
		}},
		{"upgrade", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}},
		{"expect", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Header.Set("Expect", "100-continue")
			return r
		}},
		{"bad header value", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Header["X"] = []string{"a\r\nInjected: 1"}
			return r
		}},
		{"bad header name", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.Header["X Y"] = []string{"1"}
			return r
		}},
		{"control byte in path", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a.test/", nil)
			r.URL.Path = "/a\nb"
			return r
		}},
		{"non-ASCII host", func() *http.Request { r, _ := http.NewRequest("GET", "http://bücher.test/", nil); return r }},
		{"other scheme", func() *http.Request { r, _ := http.NewRequest("GET", "ftp://a.test/", nil); return r }},
		{"close", func() *http.Request { r, _ := http.NewRequest("GET", "http://a.test/", nil); r.Close = true; return r }},
	} {
		before := used.Load()
		r := tc.r()
		var rd *readWatch
		if r.Body != nil {
			rd = &readWatch{r: r.Body}
			r.Body = io.NopCloser(rd)
		}
		_, _ = c.RoundTrip(r)
		if used.Load() != before+1 {
			t.Errorf("%s: not sent through the fallback", tc.name)
		}
		if rd != nil && rd.read.Load() {
			t.Errorf("%s: the body was read before the fallback", tc.name)
		}
	}
}

// readWatch is a request body that records whether it was read.
type readWatch struct {
	r    io.Reader
	read atomic.Bool
}

func (b *readWatch) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestReuseAndClose: a connection is reused after a body read to its
// end (Content-Length, chunked with trailers, HEAD, 204), not after
// Connection: close, HTTP/1.0 or a body closed before its end.
func TestReuseAndClose(t *testing.T) {
	tests := []struct {
		name, method, resp, wantBody string
		wantConns                    int64
		closeEarly                   bool
	}{
		{name: "content-length", method: "GET", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok", wantConns: 1},
		{name: "chunked", method: "GET", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n", wantBody: "ok", wantConns: 1},
		{name: "HEAD", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", wantConns: 1},
		{name: "204", method: "GET", resp: "HTTP/1.1 204 No Content\r\n\r\n", wantConns: 1},
		{name: "connection close", method: "GET", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok", wantConns: 2},
		{name: "HTTP/1.0", method: "GET", resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok", wantConns: 2},
		{name: "closed before the end", method: "GET", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantConns: 2, closeEarly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o *rawOrigin
			o = startRawOrigin(t, nil, serveFixed(&o, nil, tt.resp))
			c := newClient(t)
			for i := range 2 {
				r, _ := http.NewRequest(tt.method, "http://"+o.addr+"/x", nil)
				resp, err := c.RoundTrip(r)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if tt.closeEarly {
					resp.Body.Close()
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != tt.wantBody {
					t.Fatalf("request %d: body %q, %v", i, b, err)
				}
				if tt.name == "chunked" && resp.Trailer.Get("X-Sum") != "42" {
					t.Errorf("trailer %v", resp.Trailer)
				}
			}
			if got := o.conns.Load(); got != tt.wantConns {
				t.Errorf("origin accepted %d connections, want %d", got, tt.wantConns)
			}
			if tt.wantConns == 2 {
				poll.True(t, 5*time.Second, "both connections closed", func() bool { return o.closed.Load() == 2 })
			}
		})
	}
}

// TestServerClosedIdleConnection: a pooled connection the server closed
// while it was idle costs the request nothing: it is sent again on a new
// one. A new connection that fails is not retried.
func TestServerClosedIdleConnection(t *testing.T) {
	o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		// One response per connection, then the server closes it
		// without having said so.
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	c := newClient(t)
	for i := range 3 {
		if _, body, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/"); err != nil || body != "ok" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
	}
	if got := o.conns.Load(); got != 3 {
		t.Errorf("origin accepted %d connections, want 3", got)
	}

	mute := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		_, _ = readRequest(br) // and close without an answer
	})
	if _, _, err := get(t, c, t.Context(), "GET", "http://"+mute.addr+"/"); err == nil {
		t.Fatal("a new connection closed without an answer: no error")
	}
	if got := mute.conns.Load(); got != 1 {
		t.Errorf("a failed new connection was retried: %d connections", got)
	}
}

// TestCloseCrossesRequest: a server that closes a reused connection on
// reading the request, without an answer, costs the request nothing: it
// is sent again on a new connection.
func TestCloseCrossesRequest(t *testing.T) {
	o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, _ = readRequest(br) // the second request: closed unanswered
	})
	c := newClient(t)
	for i := range 2 {
		if _, body, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/"); err != nil || body != "ok" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
	}
	if got := o.conns.Load(); got != 2 {
		t.Errorf("origin accepted %d connections, want 2", got)
	}
}

// TestUnsolicitedWhileIdle: what a server sends on an idle connection (a
// 408 before it closes it) is never read as the next request's answer:
// the connection is dropped when next taken from the pool. Also once
// the response header timeout of the request before has passed, after
// a response with a body and after one without.
func TestUnsolicitedWhileIdle(t *testing.T) {
	for _, first := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\n\r\n",
	} {
		for _, timeout := range []time.Duration{0, 20 * time.Millisecond} {
			t.Run(fmt.Sprintf("%.12s/timeout=%s", first[9:], timeout), func(t *testing.T) {
				sent, pooled := make(chan struct{}), make(chan struct{})
				var n atomic.Int64
				o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
					isFirst := n.Add(1) == 1
					for {
						if _, err := readRequest(br); err != nil {
							return
						}
						if !isFirst {
							io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
							continue
						}
						io.WriteString(c, first)
						// Once the client pooled the connection. On
						// loopback the bytes are in the client's socket
						// once the write returns.
						<-pooled
						io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
						close(sent)
						isFirst = false
					}
				})
				c := newClient(t)
				c.ResponseHeaderTimeout = timeout
				if _, _, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/"); err != nil {
					t.Fatalf("first request: %v", err)
				}
				t0 := time.Now()
				if c.Idle() != 1 {
					t.Fatal("the first connection was not pooled")
				}
				close(pooled)
				<-sent
				// The first request's header deadline must have passed.
				poll.True(t, 5*time.Second, "the response header timeout passed", func() bool { return time.Since(t0) > 2*timeout })
				resp, body, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/")
				if err != nil || resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("second request: %v %q %v", resp, body, err)
				}
				if got := o.conns.Load(); got != 2 {
					t.Errorf("origin accepted %d connections, want 2", got)
				}
			})
		}
	}
}

// TestInformational: 1xx responses reach the request's receiver in
// order, once each, however it is given (a ClientTrace, an Informational
// under InformationalKey, both) and whoever sends the request (the
// Client, or its Fallback, an http.Transport, for a request it does not
// send itself); a 101 to a request that asked for no upgrade is an error.
func TestInformational(t *testing.T) {
	var o *rawOrigin
	o = startRawOrigin(t, nil, serveFixed(&o, nil, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	want := []string{"103 </a.css>; rel=preload", "102 "}
	for _, tc := range []struct {
		name               string
		trace, inf         bool
		viaFallback        bool
		wantTrace, wantInf []string
	}{
		{name: "trace", trace: true, wantTrace: want},
		{name: "informational", inf: true, wantInf: want},
		{name: "both", trace: true, inf: true, wantTrace: want, wantInf: want},
		{name: "trace, fallback", trace: true, viaFallback: true, wantTrace: want},
		{name: "informational, fallback", inf: true, viaFallback: true, wantInf: want},
		{name: "both, fallback", trace: true, inf: true, viaFallback: true, wantTrace: want, wantInf: want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			c.Fallback = tr
			var seenTrace, seenInf []string
			ctx := t.Context()
			if tc.trace {
				ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					seenTrace = append(seenTrace, fmt.Sprintf("%d %s", code, h.Get("Link")))
					return nil
				}})
			}
			if tc.inf {
				ctx = context.WithValue(ctx, InformationalKey{}, informationalFunc(func(code int, h textproto.MIMEHeader) error {
					seenInf = append(seenInf, fmt.Sprintf("%d %s", code, h.Get("Link")))
					return nil
				}))
			}
			r, err := http.NewRequestWithContext(ctx, "GET", "http://"+o.addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.viaFallback {
				r.Header.Set("Connection", "keep-alive") // not sent by the Client itself
				if _, ok := eligible(r); ok {
					t.Fatal("the request would not go to Fallback")
				}
			}
			resp, err := c.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("%v %q", resp.Status, body)
			}
			if fmt.Sprint(seenTrace) != fmt.Sprint(tc.wantTrace) || fmt.Sprint(seenInf) != fmt.Sprint(tc.wantInf) {
				t.Errorf("1xx seen by the trace %q and the Informational %q, want %q and %q", seenTrace, seenInf, tc.wantTrace, tc.wantInf)
			}
		})
	}

	c := newClient(t)
	var sw *rawOrigin
	sw = startRawOrigin(t, nil, serveFixed(&sw, nil, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"))
	if _, _, err := get(t, c, t.Context(), "GET", "http://"+sw.addr+"/"); !errors.Is(err, errSwitched) {
		t.Errorf("101: %v, want errSwitched", err)
	}
	poll.True(t, 5*time.Second, "the switched connection closed", func() bool { return sw.closed.Load() == 1 })
}

// informationalFunc is a func as an Informational.
type informationalFunc func(int, textproto.MIMEHeader) error

func (f informationalFunc) Got1xxResponse(code int, h textproto.MIMEHeader) error { return f(code, h) }

// TestAttempts: every attempt to send a request is told once to its
// receiver, however it is given (a ClientTrace's GotConn, an Attempts
// under AttemptsKey, both), whoever sends it (the Client, or its
// Fallback), on a new connection, a reused one, and when the Client
// sends it again after a reused connection closed under it: the count a
// caller bounds the transports' retries by (the gateway's upstreamTries)
// is the count of attempts.
func TestAttempts(t *testing.T) {
	// The second request on a connection is closed unanswered; every
	// other one is answered.
	o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, _ = readRequest(br)
	})
	for _, recv := range []struct {
		name          string
		trace, attmpt bool
	}{{"trace", true, false}, {"attempts", false, true}, {"both", true, true}} {
		for _, path := range []struct {
			name string
			// requests sent one after the other on one Client; want
			// the Reused of each attempt of the last one.
			requests    int
			viaFallback bool
			want        []bool
		}{
			{name: "new connection", requests: 1, want: []bool{false}},
			{name: "closed under the request, sent again", requests: 2, want: []bool{true, false}},
			{name: "fallback", requests: 1, viaFallback: true, want: []bool{false}},
		} {
			t.Run(recv.name+", "+path.name, func(t *testing.T) {
				c := newClient(t)
				tr := &http.Transport{}
				t.Cleanup(tr.CloseIdleConnections)
				c.Fallback = tr
				var fromTrace, fromAttempts []bool
				for i := range path.requests {
					fromTrace, fromAttempts = nil, nil
					ctx := t.Context()
					if recv.trace {
						ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
							fromTrace = append(fromTrace, info.Reused)
						}})
					}
					if recv.attmpt {
						ctx = context.WithValue(ctx, AttemptsKey{}, attemptsFunc(func(info httptrace.GotConnInfo) {
							fromAttempts = append(fromAttempts, info.Reused)
						}))
					}
					r, err := http.NewRequestWithContext(ctx, "GET", "http://"+o.addr+"/", nil)
					if err != nil {
						t.Fatal(err)
					}
					if path.viaFallback {
						r.Header.Set("Connection", "keep-alive") // not sent by the Client itself
					}
					resp, err := c.RoundTrip(r)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) != "ok" {
						t.Fatalf("request %d: %q", i, body)
					}
				}
				var wantTrace, wantAttempts []bool
				if recv.trace {
					wantTrace = path.want
				}
				if recv.attmpt {
					wantAttempts = path.want
				}
				if fmt.Sprint(fromTrace) != fmt.Sprint(wantTrace) || fmt.Sprint(fromAttempts) != fmt.Sprint(wantAttempts) {
					t.Errorf("attempts (Reused) seen by the trace %v and the Attempts %v, want %v and %v", fromTrace, fromAttempts, wantTrace, wantAttempts)
				}
			})
		}
	}
}

// attemptsFunc is a func as an Attempts.
type attemptsFunc func(httptrace.GotConnInfo)

func (f attemptsFunc) GotConn(info httptrace.GotConnInfo) { f(info) }

// TestHeaderTimeout: an upstream that does not answer within
// ResponseHeaderTimeout fails the request with a timeout error (the
// gateway answers 504), and the connection is closed.
func TestHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	var o *rawOrigin
	o = startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		select {
		case <-release:
		case <-t.Context().Done():
		}
		if _, err := br.ReadByte(); err != nil {
			o.closed.Add(1)
		}
	})
	defer close(release)
	c := newClient(t)
	c.ResponseHeaderTimeout = 50 * time.Millisecond
	_, _, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v, want a net.Error timeout wrapping os.ErrDeadlineExceeded", err)
	}
	if o.conns.Load() != 1 {
		t.Errorf("a timed-out request was retried")
	}
}

// TestCancelAbortsUpstream: the request's context ending aborts a
// blocked header read and a blocked body read at once, whichever way it
// ends: a context the Client watches with context.AfterFunc, and one
// with a Cancellation (the gateway's in-flight context) cancelled on its
// own (through OnCancel) or through its parent (AfterFunc on Parent). A
// request that completes leaves no abort registered, and its connection
// pooled.
func TestCancelAbortsUpstream(t *testing.T) {
	for _, how := range []string{"context", "own", "parent", "covered parent"} {
		t.Run(how, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			var o *rawOrigin
			o = startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := readRequest(br)
					if err != nil {
						return
					}
					if bytes.Contains(req, []byte("/ok")) {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					if bytes.Contains(req, []byte("/body")) {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
					}
					arrived <- struct{}{}
					if _, err := br.ReadByte(); err != nil {
						o.closed.Add(1) // the client closed: it stopped waiting
					}
					return
				}
			})
			c := newClient(t)
			// Longer than any abort takes: an abort that never comes
			// fails the header read with a timeout.
			c.ResponseHeaderTimeout = 10 * time.Second
			// newCtx returns the request's context and what cancels it.
			var own []*ownCancel
			newCtx := func() (context.Context, func()) {
				switch how {
				case "context":
					return context.WithCancel(t.Context())
				}
				oc := newOwnCancel(t.Context())
				own = append(own, oc)
				switch how {
				case "own":
					return oc.req, func() { oc.cancelOwn(nil) }
				case "covered parent":
					// The Cancellation covers its parent (Parent nil),
					// as the gateway's tunnel watch does.
					oc.covers = true
					return oc.req, func() { oc.cancelParent(); oc.takeAbort() }
				}
				return oc.req, oc.cancelParent
			}

			ctx, cancel := newCtx()
			if _, body, err := get(t, c, ctx, "GET", "http://"+o.addr+"/ok"); err != nil || body != "ok" {
				t.Fatalf("GET /ok: %q, %v", body, err)
			}
			if c.Idle() != 1 {
				t.Fatalf("%d idle connections after a complete response, want 1", c.Idle())
			}
			for _, oc := range own {
				if oc.registered() {
					t.Fatal("an abort is still registered with the Cancellation after the response's end")
				}
			}
			cancel()

			ctx, cancel = newCtx()
			go func() { <-arrived; cancel() }()
			if _, _, err := get(t, c, ctx, "GET", "http://"+o.addr+"/headers"); !errors.Is(err, context.Canceled) {
				t.Errorf("header read: %v, want context.Canceled", err)
			}
			poll.True(t, 5*time.Second, "the connection closed", func() bool { return o.closed.Load() == 1 })

			ctx, cancel = newCtx()
			defer cancel()
			r, _ := http.NewRequestWithContext(ctx, "GET", "http://"+o.addr+"/body", nil)
			resp, err := c.RoundTrip(r)
			if err != nil {
				t.Fatal(err)
			}
			<-arrived
			buf := make([]byte, 4)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatal(err)
			}
			cancel()
			if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
				t.Errorf("body read: %v, want context.Canceled", err)
			}
			resp.Body.Close()
			poll.True(t, 5*time.Second, "the connection closed", func() bool { return o.closed.Load() == 2 })
			if c.Idle() != 0 {
				t.Errorf("%d idle connections after cancelled requests", c.Idle())
			}
			for i, oc := range own {
				if !oc.used() {
					t.Errorf("request %d: the Client did not use the context's Cancellation", i+1)
				}
			}
		})
	}
}

// ownCancel is the Cancellation of a context (req), as the gateway's
// in-flight context's: its own cancellation (cancelOwn) calls the abort
// registered with OnCancel; its parent's cancellation (cancelParent)
// does not, unless it covers its parent (covers: Parent is nil, and the
// test calls takeAbort).
type ownCancel struct {
	req          *ownCtx
	parent       context.Context
	cancel       context.CancelCauseFunc
	cancelParent context.CancelFunc

	covers bool

	mu        sync.Mutex
	abort     func()
	cancelled bool
	uses      int
}

// ownCtx is a context holding its Cancellation.
type ownCtx struct {
	context.Context
	oc *ownCancel
}

func (c *ownCtx) Value(key any) any {
	if key == (CancellationKey{}) {
		return c.oc
	}
	return c.Context.Value(key)
}

func newOwnCancel(ctx context.Context) *ownCancel {
	oc := &ownCancel{}
	oc.parent, oc.cancelParent = context.WithCancel(ctx)
	inner, cancel := context.WithCancelCause(oc.parent)
	oc.req, oc.cancel = &ownCtx{Context: inner, oc: oc}, cancel
	return oc
}

func (oc *ownCancel) Context() context.Context { return oc.req }
func (oc *ownCancel) Parent() context.Context {
	if oc.covers {
		return nil
	}
	return oc.parent
}

func (oc *ownCancel) OnCancel(abort func()) {
	oc.mu.Lock()
	oc.uses++
	if !oc.cancelled && oc.req.Err() == nil {
		oc.abort = abort
		oc.mu.Unlock()
		return
	}
	oc.mu.Unlock()
	abort()
}

func (oc *ownCancel) StopOnCancel() bool {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	stopped := oc.abort != nil
	oc.abort = nil
	return stopped
}

func (oc *ownCancel) cancelOwn(cause error) {
	oc.cancel(cause)
	oc.mu.Lock()
	oc.cancelled = true
	oc.mu.Unlock()
	oc.takeAbort()
}

func (oc *ownCancel) takeAbort() {
	oc.mu.Lock()
	abort := oc.abort
	oc.abort = nil
	oc.mu.Unlock()
	if abort != nil {
		abort()
	}
}

func (oc *ownCancel) registered() bool {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.abort != nil
}

func (oc *ownCancel) used() bool {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.uses > 0
}

// TestHostileResponses: malformed responses end in an error (a body
// error for a broken body), never a panic, and their connection is not
// pooled.
func TestHostileResponses(t *testing.T) {
	huge := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"
	for _, tc := range []struct{ name, resp string }{
		{"malformed status line", "HTTP/1.1 OK\r\n\r\n"},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n"},
		{"status below 100", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"},
		{"huge headers", huge},
		{"huge 1xx headers", "HTTP/1.1 103 Early Hints\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"},
		{"chunk cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nok"},
		{"body shorter than its length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"},
		{"two content lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{"bytes beyond the response", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o *rawOrigin
			o = startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
				if _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, tc.resp)
				if tc.name == "chunk cut short" || tc.name == "body shorter than its length" {
					c.(*net.TCPConn).CloseWrite()
				}
				for {
					if _, err := br.ReadByte(); err != nil {
						o.closed.Add(1)
						return
					}
				}
			})
			c := newClient(t)
			c.MaxResponseHeaderBytes = 1 << 20
			_, _, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/")
			if err == nil && tc.name != "bytes beyond the response" {
				t.Fatal("no error")
			}
			poll.True(t, 5*time.Second, "the connection closed", func() bool { return o.closed.Load() == 1 })
			if c.Idle() != 0 {
				t.Errorf("the connection was pooled")
			}
		})
	}
}

// FuzzResponse: whatever the upstream answers, to a GET or to a POST
// with a body, RoundTrip and the body end without a panic, and a
// connection is pooled only after a complete, well-framed response.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
	} {
		f.Add(s)
	}
	resp := make(chan string, 1)
	// One origin for every input: each answers one request, then closes.
	o := startRawOriginF(f, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, <-resp)
	})
	f.Fuzz(func(t *testing.T, s string) {
		c := &Client{Dial: (&net.Dialer{}).DialContext, Fallback: failRT{t}, MaxResponseHeaderBytes: 64 << 10}
		defer c.CloseIdleConnections()
		resp <- s
		r, _ := http.NewRequest("GET", "http://"+o.addr+"/", nil)
		if len(s)%2 == 1 {
			// Half the inputs answer a POST with a body, which the
			// client wrote from its buffer.
			r, _ = http.NewRequest("POST", "http://"+o.addr+"/", struct{ io.Reader }{strings.NewReader(`{"a":1}`)})
			r.ContentLength = 7
		}
		rsp, err := c.RoundTrip(r)
		if err != nil {
			if c.Idle() != 0 {
				t.Fatal("pooled after an error")
			}
			return
		}
		_, err = io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
		if err != nil && c.Idle() != 0 {
			t.Fatal("pooled after a body error")
		}
	})
}

// startRawOriginF is startRawOrigin for a fuzz target.
func startRawOriginF(f *testing.F, serve func(c net.Conn, br *bufio.Reader)) *rawOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	o := &rawOrigin{ln: ln, addr: ln.Addr().String()}
	f.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return o
}

// TestIdleBounds: at most MaxIdleConnsPerHost idle connections per host,
// closed after IdleConnTimeout by the sweep, and all by
// CloseIdleConnections.
func TestIdleBounds(t *testing.T) {
	release := make(chan struct{})
	var o *rawOrigin
	o = startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRequest(br)
			if err != nil {
				o.closed.Add(1)
				return
			}
			if bytes.Contains(req, []byte("/hold")) {
				<-release
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newClient(t)
	c.MaxIdleConnsPerHost = 2
	// Four requests at once need four connections.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, body, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/hold"); err != nil || body != "ok" {
				t.Errorf("%q %v", body, err)
			}
		}()
	}
	poll.True(t, 5*time.Second, "four connections", func() bool { return o.conns.Load() == 4 })
	close(release)
	wg.Wait()
	if got := c.Idle(); got != 2 {
		t.Errorf("%d idle, want 2", got)
	}
	poll.True(t, 5*time.Second, "two connections closed", func() bool { return o.closed.Load() == 2 })

	c.mu.Lock()
	c.IdleConnTimeout = 20 * time.Millisecond
	c.sweep.Reset(0)
	c.mu.Unlock()
	poll.True(t, 5*time.Second, "the idle connections swept", func() bool { return o.closed.Load() == 4 && c.Idle() == 0 })

	if _, _, err := get(t, c, t.Context(), "GET", "http://"+o.addr+"/"); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	poll.True(t, 5*time.Second, "closed by CloseIdleConnections", func() bool { return o.closed.Load() == 5 })
}

// TestTLS: https requests go through DialTLS; a connection that
// negotiated h2 is refused; a DialTLS error comes back as it is.
func TestTLS(t *testing.T) {
	ca, err := testpki.NewAuthority("h1client test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("origin.test")
	if err != nil {
		t.Fatal(err)
	}
	var o *rawOrigin
	o = startRawOrigin(t, &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"http/1.1", "h2"}},
		serveFixed(&o, nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	proto := "http/1.1"
	sentinel := errors.New("sentinel")
	c := newClient(t)
	c.DialTLS = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proto == "" {
			return nil, sentinel
		}
		host, _, _ := net.SplitHostPort(addr)
		raw, err := (&net.Dialer{}).DialContext(ctx, network, o.addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, &tls.Config{ServerName: host, RootCAs: ca.Pool(), NextProtos: []string{proto}})
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return tc, nil
	}
	u := "https://origin.test:" + mustPort(t, o.addr) + "/"
	for range 2 {
		resp, body, err := get(t, c, t.Context(), "GET", u)
		if err != nil || body != "ok" || resp.TLS == nil || resp.TLS.ServerName != "origin.test" {
			t.Fatalf("%v %q %v", resp, body, err)
		}
	}
	if o.conns.Load() != 1 {
		t.Errorf("%d connections, want 1", o.conns.Load())
	}
	c.CloseIdleConnections()
	proto = "h2"
	if _, _, err := get(t, c, t.Context(), "GET", u); err == nil || !strings.Contains(err.Error(), `negotiated "h2"`) {
		t.Errorf("h2 connection: %v", err)
	}
	proto = ""
	if _, _, err := get(t, c, t.Context(), "GET", u); !errors.Is(err, sentinel) {
		t.Errorf("dial error: %v", err)
	}
}

func mustPort(t *testing.T, addr string) string {
	u, err := url.Parse("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestMaxIdleConns: a caller reaching many hosts (10× MaxIdleConns of
// them, as under a wildcard destination) leaves at most MaxIdleConns
// idle connections in the pool — before, one per host, each a file
// descriptor, for IdleConnTimeout — and the connections past it are
// closed, the one idle the longest first; a victim that uses its host
// more often than the pool turns over keeps its one connection (dials
// counted, never timed).
func TestMaxIdleConns(t *testing.T) {
	const max = 8
	var o *rawOrigin
	o = startRawOrigin(t, nil, serveFixed(&o, nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	var mu sync.Mutex
	dials := map[string]int{}
	d := &net.Dialer{}
	c := &Client{Fallback: failRT{t}, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 4, MaxIdleConns: max,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
			return d.DialContext(ctx, network, o.addr) // every name is the one origin
		}}
	t.Cleanup(c.CloseIdleConnections)
	ctx := context.Background()
	victim := func() {
		t.Helper()
		if _, body, err := get(t, c, ctx, "GET", "http://victim.test/x"); err != nil || body != "ok" {
			t.Fatalf("victim: %q, %v", body, err)
		}
	}
	victim()
	for i := range 10 * max {
		if _, body, err := get(t, c, ctx, "GET", fmt.Sprintf("http://h%d.wild.test/x", i)); err != nil || body != "ok" {
			t.Fatalf("host %d: %q, %v", i, body, err)
		}
		if n := c.Idle(); n > max {
			t.Fatalf("after %d hosts %d idle connections, bound %d", i+1, n, max)
		}
		if i%(max/2) == 0 {
			victim()
		}
	}
	mu.Lock()
	vd := dials["victim.test:80"]
	mu.Unlock()
	if vd != 1 {
		t.Errorf("the victim dialled %d connections, want 1 (its idle one was closed by the flood)", vd)
	}
	// Every connection past the bound was closed (the origin saw it).
	poll.True(t, 5*time.Second, "the evicted connections closed", func() bool { return o.closed.Load() >= int64(10*max+1-max) })
}

// TestAbortFollowsContext: a round trip aborted because its context is
// being cancelled fails with the context's cause, never with the
// deadline the abort sets (a timeout, which the gateway answers 504
// upstream_timeout): the abort never comes before the context reports
// its cancellation. A Cancellation's context is cancelled with its
// Parent, but by the parent's cancel, which starts its AfterFuncs (the
// Client's abort among them) before, after or while it reaches the
// child; here the request's context lags its parent until the test
// cancels it, for a header read and a body read. (The Cancellation
// covering its parent, Parent nil, is its implementer's to order: the
// gateway's TestAbortAfterContextCancelled.)
func TestAbortFollowsContext(t *testing.T) {
	errLeft := errors.New("the client left")
	for _, read := range []string{"headers", "body"} {
		t.Run(read, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
				req, err := readRequest(br)
				if err != nil {
					return
				}
				if bytes.Contains(req, []byte("/body")) {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
				}
				arrived <- struct{}{}
				_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
				_, _ = br.ReadByte() // until the client closes
			})
			c := newClient(t)
			c.ResponseHeaderTimeout = 10 * time.Second
			// The request's context lags its parent: cancelled only
			// when the test says (lag), as the parent's cancel may
			// reach it after the AfterFuncs on the parent ran.
			oc := &ownCancel{}
			oc.parent, oc.cancelParent = context.WithCancel(t.Context())
			inner, lag := context.WithCancelCause(t.Context())
			oc.req, oc.cancel = &ownCtx{Context: inner, oc: oc}, lag
			defer oc.cancelParent()
			defer lag(nil)

			done := make(chan error, 1)
			go func() {
				r, _ := http.NewRequestWithContext(oc.req, "GET", "http://"+o.addr+"/"+read, nil)
				resp, err := c.RoundTrip(r)
				if err == nil {
					defer resp.Body.Close()
					_, err = io.ReadAll(resp.Body)
				}
				done <- err
			}()
			<-arrived
			oc.cancelParent()
			// An abort that did not wait for the request's context
			// fails the read now, with a timeout; it is given this long
			// to (wrongly) do so before the context is cancelled.
			select {
			case err := <-done:
				t.Fatalf("the round trip ended (%v) before its context was cancelled", err)
			case <-time.After(200 * time.Millisecond):
			}
			lag(errLeft)
			select {
			case err := <-done:
				if !errors.Is(err, errLeft) || isTimeout(err) {
					t.Fatalf("error %v, want the context's cause (%v), not a timeout", err, errLeft)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the round trip was not aborted once its context was cancelled")
			}
		})
	}
}
