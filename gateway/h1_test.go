package gateway

// The HTTP/1.1 server (gateway/internal/h1) through a real gateway: an
// intercepted tunnel whose client negotiated http/1.1.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Tunnel opens an intercepted tunnel to apiHost and speaks HTTP/1.1 in
// it (ALPN http/1.1 only), as curl --http1.1 or Python do.
func h1Tunnel(t *testing.T, tg *testGateway) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	return h1TunnelTo(t, tg, apiHost)
}

// h1TunnelTo is h1Tunnel to another host.
func h1TunnelTo(t *testing.T, tg *testGateway, host string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return h1TunnelOver(t, tg, conn, host)
}

// h1TunnelOver is h1TunnelTo over conn, a connection to one of the
// gateway's proxy listeners.
func h1TunnelOver(t *testing.T, tg *testGateway, conn net.Conn, host string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// expectClosed reads until the gateway closes the connection.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	n, err := io.Copy(io.Discard, br)
	if err != nil && !errors.Is(err, io.EOF) && !isConnReset(err) {
		t.Fatalf("connection not closed within %s: read %d bytes, %v", within, n, err)
	}
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	tg := startGateway(t)
	c, br := h1Tunnel(t, tg)
	for i := range 3 {
		fmt.Fprintf(c, "GET /v1/seq%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, apiHost)
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 || body != fmt.Sprintf("ok /v1/seq%d", i) || resp.Close {
			t.Fatalf("request %d: %s %q close=%v", i, resp.Status, body, resp.Close)
		}
	}
	// Two requests in one write: answered in order on the same connection.
	fmt.Fprintf(c, "GET /v1/p1 HTTP/1.1\r\nHost: %s\r\n\r\nHEAD /v1/p2 HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost, apiHost)
	if resp, body := readResp(t, br, "GET"); body != "ok /v1/p1" {
		t.Fatalf("pipelined 1: %s %q", resp.Status, body)
	}
	if resp, body := readResp(t, br, "HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("pipelined HEAD: %s %q", resp.Status, body)
	}
	got := tg.origin.all()
	if len(got) != 5 {
		t.Fatalf("origin saw %d requests, want 5", len(got))
	}
	for _, s := range got {
		if s.Header.Get("Authorization") != "Bearer "+tg.token {
			t.Fatalf("origin request %s without the credential", s.Path)
		}
	}
}

func TestH1RequestBodies(t *testing.T) {
	tg := startGateway(t)
	c, br := h1Tunnel(t, tg)

	// Content-Length body.
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello", apiHost)
	if resp, body := readResp(t, br, "POST"); body != "len=5" {
		t.Fatalf("content-length body: %s %q", resp.Status, body)
	}
	// Chunked body.
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", apiHost)
	if resp, body := readResp(t, br, "POST"); body != "len=7" {
		t.Fatalf("chunked body: %s %q", resp.Status, body)
	}
	// Expect: 100-continue: the body is sent only after the interim
	// response, which comes when the upstream request needs the body.
	fmt.Fprintf(c, "PUT /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", apiHost)
	interim, err := http.ReadResponse(br, nil)
	if err != nil || interim.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue first: %v %v", interim, err)
	}
	fmt.Fprint(c, "xyz")
	if resp, body := readResp(t, br, "PUT"); body != "len=3" {
		t.Fatalf("after 100 Continue: %s %q", resp.Status, body)
	}
	// The connection still serves.
	fmt.Fprintf(c, "GET /v1/after HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	if _, body := readResp(t, br, "GET"); body != "ok /v1/after" {
		t.Fatalf("after bodies: %q", body)
	}
}

func TestH1UnreadBodyClosesConnection(t *testing.T) {
	tg := startGateway(t)
	size := 2 << 20
	t.Run("refused", func(t *testing.T) {
		// The gateway refuses without reading a body larger than it
		// drains (maxUnreadBody): the answer arrives and the connection
		// ends.
		c, br := h1Tunnel(t, tg)
		fmt.Fprintf(c, "POST /v1/%%2e%%2e/x HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", apiHost, size)
		go func() { _, _ = c.Write(make([]byte, size)) }()
		resp, _ := readResp(t, br, "POST")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %s, want the gateway's 400", resp.Status)
		}
		expectClosed(t, c, br, 10*time.Second)
	})
	t.Run("upstream-answers-early", func(t *testing.T) {
		// The origin answers without reading the body. Whether the
		// upstream connection took all of it (socket buffers) or not,
		// the 413 arrives, and the connection then either ends or serves
		// the next request correctly — never a request line read from
		// the middle of the body.
		c, br := h1Tunnel(t, tg)
		fmt.Fprintf(c, "POST /early HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", apiHost, size)
		wrote := make(chan error, 1)
		go func() { _, err := c.Write(make([]byte, size)); wrote <- err }()
		resp, _ := readResp(t, br, "POST")
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %s, want the origin's 413", resp.Status)
		}
		select {
		case err := <-wrote:
			if err != nil {
				return // the gateway closed the connection
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the body was neither read nor refused within 10s")
		}
		if _, err := fmt.Fprintf(c, "GET /v1/next HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		next, err := http.ReadResponse(br, nil)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("neither closed nor answered: %v", err)
			}
			return // closed
		}
		b, _ := io.ReadAll(next.Body)
		if next.StatusCode != 200 || string(b) != "ok /v1/next" {
			t.Fatalf("next request on the connection: %s %q", next.Status, b)
		}
	})
}

func TestH1ResponseFraming(t *testing.T) {
	tg := startGateway(t)
	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /trailers HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, body := readResp(t, br, "GET")
	if body != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("trailers: %q trailer=%v te=%v", body, resp.Trailer, resp.TransferEncoding)
	}
	fmt.Fprintf(c, "GET /nocontent HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("204: %s %q", resp.Status, body)
	}
	// A refusal from the gateway itself, then the connection goes on.
	fmt.Fprintf(c, "GET /v1/%%2e%%2e/admin HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != http.StatusBadRequest || resp.Header.Get(ReasonHeader) != codeBadPath {
		t.Fatalf("bad path: %s %s", resp.Status, resp.Header.Get(ReasonHeader))
	}
	fmt.Fprintf(c, "GET /v1/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("host mismatch: %s", resp.Status)
	}
	// Connection: close is honoured.
	fmt.Fprintf(c, "GET /v1/last HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", apiHost)
	if resp, body := readResp(t, br, "GET"); !resp.Close || body != "ok /v1/last" {
		t.Fatalf("Connection: close: close=%v %q", resp.Close, body)
	}
	expectClosed(t, c, br, 5*time.Second)
}

// TestH1TruncatedUpstreamBody: a body the upstream cuts off reaches the
// client incomplete (no clean last chunk), the connection closes, and the
// request is still audited.
func TestH1TruncatedUpstreamBody(t *testing.T) {
	tg := startGateway(t)
	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /truncate HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the truncated body %q ended cleanly; want an error", b)
	}
	expectClosed(t, c, br, 5*time.Second)
	waitFor(t, 5*time.Second, "the audit line of the truncated response", func() bool {
		return strings.Contains(tg.audit.String(), `"path":"/truncate"`) && strings.Contains(tg.audit.String(), `"code":"upstream_error"`)
	})
}

func TestH1HTTP10(t *testing.T) {
	tg := startGateway(t)
	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /v1/old HTTP/1.0\r\nHost: %s\r\n\r\n", apiHost)
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "ok /v1/old" {
		t.Fatalf("HTTP/1.0: %s %q", resp.Status, body)
	}
	expectClosed(t, c, br, 5*time.Second)
}

func TestH1BadRequests(t *testing.T) {
	tg := startGateway(t)
	for name, send := range map[string]string{
		"garbage":        "NOT HTTP AT ALL\r\n\r\n",
		"header-colon":   "GET /v1/x HTTP/1.1\r\nHost: " + apiHost + "\r\nNoColon\r\n\r\n",
		"missing-host":   "GET /v1/x HTTP/1.1\r\n\r\n",
		"bad-version":    "GET /v1/x HTTP/2.0\r\nHost: " + apiHost + "\r\n\r\n",
		"expect-other":   "POST /echo HTTP/1.1\r\nHost: " + apiHost + "\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx",
		"oversized":      "GET /v1/x HTTP/1.1\r\nHost: " + apiHost + "\r\nX-Big: " + strings.Repeat("b", 100<<10) + "\r\n\r\n",
		"bad-chunk-size": "POST /echo HTTP/1.1\r\nHost: " + apiHost + "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, br := h1Tunnel(t, tg)
			go func() { _, _ = io.WriteString(c, send) }()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if resp.StatusCode < 400 || resp.StatusCode > 505 {
				t.Fatalf("status %s, want an error", resp.Status)
			}
			if name == "oversized" && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %s, want 431", resp.Status)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			expectClosed(t, c, br, 5*time.Second)
		})
	}
	// Still serving.
	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /v1/fine HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	if _, body := readResp(t, br, "GET"); body != "ok /v1/fine" {
		t.Fatalf("after bad requests: %q", body)
	}
}

func TestH1IdleTimeoutAndShutdown(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("limits: {idle_timeout: 300ms}\nresolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))

	c, br := h1Tunnel(t, tg)
	fmt.Fprintf(c, "GET /v1/once HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	readResp(t, br, "GET")
	start := time.Now()
	expectClosed(t, c, br, 5*time.Second)
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("idle connection closed after %s, want about idle_timeout", d)
	}
}

func TestH1ShutdownClosesIdleAndFinishesBusy(t *testing.T) {
	tg := startGateway(t)
	idle, idleBR := h1Tunnel(t, tg)
	fmt.Fprintf(idle, "GET /v1/idle HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	readResp(t, idleBR, "GET")

	busy, busyBR := h1Tunnel(t, tg)
	fmt.Fprintf(busy, "GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(busyBR, nil)
	if err != nil {
		t.Fatal(err)
	}
	stream := bufio.NewReader(resp.Body)
	if first, err := stream.ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("stream start: %q %v", first, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- tg.stop() }() // shutdown begins while /stream is in flight
	expectClosed(t, idle, idleBR, 3*time.Second)

	// The busy request may finish: release the origin directly.
	origin := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tg.pki.pool, ServerName: apiHost}}}
	ack, err := origin.Get("https://" + tg.origin.addr + "/stream-ack")
	if err != nil {
		t.Fatal(err)
	}
	ack.Body.Close()
	if second, err := stream.ReadString('\n'); err != nil || second != "second\n" {
		t.Fatalf("the in-flight response was cut: %q %v", second, err)
	}
	if _, err := io.Copy(io.Discard, stream); err != nil {
		t.Fatalf("end of the in-flight response: %v", err)
	}
	// Its headers went out before the shutdown: the connection closes
	// after it instead of waiting for another request.
	expectClosed(t, busy, busyBR, 3*time.Second)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

// TestH1IdleHandoff: an intercepted connection that stays idle is handed
// off by the h1 server: behind the plain proxy listener it is parked, with
// no goroutine of its own, until the client socket becomes readable
// (tunnelConn.SyscallConn); behind tls_listen a new goroutine waits with
// a TLS read. The next requests, pipelined, are served as before.
func TestH1IdleHandoff(t *testing.T) {
	tg := startGateway(t)
	// stacks counts the goroutines in the handed-off wait: with a TLS
	// read (tls_listen), or on the socket (socket) where connections are
	// not parked (not Linux).
	stacks := func(socket bool) int {
		buf := make([]byte, 4<<20)
		n := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "h1.(*conn).awaitHandedOff") && strings.Contains(g, "waitReadable") == socket {
				n++
			}
		}
		return n
	}
	parked := func() int {
		if runtime.GOOS != "linux" {
			return stacks(true)
		}
		return tg.gw.h1Srv.Parked()
	}
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
		// handedOff counts the handed-off waits of this listener's
		// connections.
		handedOff func() int
	}{
		{"proxy_listener", func() (net.Conn, error) { return net.Dial("tcp", tg.gw.ProxyAddr().String()) }, parked},
		{"tls_listen", func() (net.Conn, error) {
			return tls.Dial("tcp", tg.gw.TLSProxyAddr().String(), &tls.Config{ServerName: "credgate.test",
				RootCAs: tg.pki.pool, Certificates: []tls.Certificate{tg.tlsCert}})
		}, func() int { return stacks(false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handedOff := tc.handedOff
			before := handedOff()
			conn, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			c, br := h1TunnelOver(t, tg, conn, apiHost)
			fmt.Fprintf(c, "GET /v1/before HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
			if resp, body := readResp(t, br, "GET"); body != "ok /v1/before" {
				t.Fatalf("first request: %s %q", resp.Status, body)
			}
			waitFor(t, 5*time.Second, "the idle connection handed off", func() bool { return handedOff() > before })
			fmt.Fprintf(c, "GET /v1/after1 HTTP/1.1\r\nHost: %s\r\n\r\nGET /v1/after2 HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost, apiHost)
			for _, want := range []string{"ok /v1/after1", "ok /v1/after2"} {
				if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != want || resp.Close {
					t.Fatalf("after the handoff: %s %q close=%v, want 200 %q", resp.Status, body, resp.Close, want)
				}
			}
		})
	}
}

func TestTunnelConnSyscallConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	fmt.Fprint(client, "early")
	buffered := bufio.NewReader(server)
	if _, err := buffered.Peek(5); err != nil {
		t.Fatal(err)
	}
	counted := &countedConn{Conn: server, adm: newConnAdmission(0, 0, new(atomic.Int64))}
	for name, tc := range map[string]struct {
		conn net.Conn
		ok   bool
	}{
		"tcp":                    {server, true},
		"counted":                {counted, true},
		"preread drained":        {&prereadConn{Conn: counted}, true},
		"preread holding bytes":  {&prereadConn{Conn: counted, r: buffered}, false},
		"tls_listen's TLS layer": {tls.Server(counted, &tls.Config{}), false},
	} {
		_, err := (&tunnelConn{Conn: tc.conn}).SyscallConn()
		if (err == nil) != tc.ok {
			t.Errorf("%s: SyscallConn error %v, want ok=%v", name, err, tc.ok)
		}
	}
}
