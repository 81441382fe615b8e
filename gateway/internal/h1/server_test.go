package h1

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"

	"github.com/credgate/credgate/internal/syncbuf"
)

// The server alone, over loopback TCP. Its behaviour inside the gateway
// (TLS, the tunnel, WebSocket relays) is tested in gateway/h1_test.go.

type ctxKey struct{}

// startServer serves h with s on a loopback listener until the test ends.
func startServer(t *testing.T, s *Server, h http.Handler) string {
	t.Helper()
	if s.Limits == (Limits{}) {
		s.Limits = Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx := context.WithValue(context.Background(), ctxKey{}, "tunnel")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.Serve(ctx, c.(*net.TCPConn), h)
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
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

// expectClosed reads until the server closes the connection.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	n, err := io.Copy(io.Discard, br)
	if err != nil && !isConnReset(err) {
		t.Fatalf("connection not closed within %s: read %d bytes, %v", within, n, err)
	}
}

func TestServeKeepAlivePipeliningAndClose(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s ctx=%v remote=%t body=%q", r.Method, r.URL.Path, r.Context().Value(ctxKey{}), r.RemoteAddr != "", b)
	}))
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiHEAD /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []struct{ method, body string }{
		{"GET", `GET /a ctx=tunnel remote=true body=""`},
		{"POST", `POST /b ctx=tunnel remote=true body="hi"`},
		{"HEAD", ""},
	} {
		resp, body := readResp(t, br, want.method)
		if resp.StatusCode != 200 || body != want.body || resp.Close {
			t.Fatalf("%s: %s %q close=%v, want 200 %q", want.method, resp.Status, body, resp.Close, want.body)
		}
	}
	fmt.Fprint(c, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); !resp.Close {
		t.Fatal("Connection: close not honoured")
	}
	expectClosed(t, c, br, 5*time.Second)
}

func TestServeBadRequests(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for name, tc := range map[string]struct {
		send   string
		status int
	}{
		"garbage":      {"NOT HTTP AT ALL\r\n\r\n", 400},
		"missing-host": {"GET / HTTP/1.1\r\n\r\n", 400},
		"two-hosts":    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		"bad-version":  {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		"expect-other": {"POST / HTTP/1.1\r\nHost: a\r\nExpect: x\r\nContent-Length: 1\r\n\r\nx", 417},
		"oversized":    {"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 16<<10) + "\r\n\r\n", 431},
	} {
		t.Run(name, func(t *testing.T) {
			c, br := dial(t, addr)
			go func() { _, _ = io.WriteString(c, tc.send) }()
			resp, _ := readResp(t, br, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("%s close=%v, want %d and close", resp.Status, resp.Close, tc.status)
			}
			expectClosed(t, c, br, 5*time.Second)
		})
	}
}

func TestServeHandlerPanic(t *testing.T) {
	logged := &lockedBuffer{}
	s := &Server{Log: slog.New(slog.NewTextHandler(logged, nil))}
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	expectClosed(t, c, br, 5*time.Second)
	// Logged with where it happened and its type, never its value,
	// which may hold a secret (internal/panics).
	waitFor(t, "the panic logged", func() bool { return strings.Contains(logged.String(), "value of type string") })
	if l := logged.String(); strings.Contains(l, "boom") || !strings.Contains(l, "TestServeHandlerPanic") {
		t.Errorf("the log line has the panic's value or not where it happened: %s", l)
	}
}

// TestShutdownClosesIdleAndFinishesBusy: Shutdown closes an idle
// connection at once, lets a busy one finish its response (which then
// says Connection: close) and returns 0 when both are gone.
func TestShutdownClosesIdleAndFinishesBusy(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 1)
	s := &Server{}
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	idle, idleBR := dial(t, addr)
	fmt.Fprint(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	readResp(t, idleBR, "GET")
	busy, busyBR := dial(t, addr)
	fmt.Fprint(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started

	stopped := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- s.Shutdown(ctx)
	}()
	expectClosed(t, idle, idleBR, 3*time.Second)
	close(release)
	if resp, body := readResp(t, busyBR, "GET"); body != "done" || !resp.Close {
		t.Fatalf("busy response: %q close=%v, want done and close", body, resp.Close)
	}
	expectClosed(t, busy, busyBR, 3*time.Second)
	select {
	case n := <-stopped:
		if n != 0 {
			t.Fatalf("Shutdown closed %d busy connections, want 0", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	// New connections are refused.
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	expectClosed(t, c, br, 3*time.Second)
}

// TestShutdownDeadline: at the deadline Shutdown closes a connection still
// busy and counts it, but leaves a hijacked one to its hijacker.
func TestShutdownDeadline(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 2)
	t.Cleanup(func() { close(release) })
	s := &Server{}
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
		}
		started <- struct{}{}
		<-release
	}))
	busy, busyBR := dial(t, addr)
	fmt.Fprint(busy, "GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
	hijacked, _ := dial(t, addr)
	fmt.Fprint(hijacked, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if n := s.Shutdown(ctx); n != 1 {
		t.Fatalf("Shutdown closed %d connections, want 1 (the busy one)", n)
	}
	expectClosed(t, busy, busyBR, 3*time.Second)
	_ = hijacked.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := hijacked.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("the hijacked connection was closed: %v", err)
	}
}

// TestDraining: once Draining reports true, the response being written
// says Connection: close and the connection ends after it.
func TestDraining(t *testing.T) {
	var draining atomic.Bool
	addr := startServer(t, &Server{Draining: draining.Load}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/drain" {
			draining.Store(true)
		}
	}))
	c, br := dial(t, addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); resp.Close {
		t.Fatal("closed before draining")
	}
	fmt.Fprint(c, "GET /drain HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); !resp.Close {
		t.Fatal("no Connection: close while draining")
	}
	expectClosed(t, c, br, 3*time.Second)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

// lockedBuffer captures output goroutines write while the test reads.
type lockedBuffer = syncbuf.Buffer

// TestHeaderDeadlineEndsWithTheHeader: the read deadline of the request's
// header (Limits.ReadHeaderTimeout) never applies to what is read after
// the header — a hijacked connection, a request body, and the next
// request after a handler that ran past that deadline — whether or not the
// request had a body.
func TestHeaderDeadlineEndsWithTheHeader(t *testing.T) {
	const headerTimeout = 100 * time.Millisecond
	// pastDeadline waits until a header deadline set at start has passed:
	// a wait for a known time, not a guess.
	pastDeadline := func(start time.Time) { time.Sleep(time.Until(start.Add(3 * headerTimeout))) }
	limits := Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: headerTimeout, IdleTimeout: 10 * time.Second}

	t.Run("hijacked", func(t *testing.T) {
		got := make(chan string, 1)
		addr := startServer(t, &Server{Limits: limits}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				got <- "hijack: " + err.Error()
				return
			}
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			b, err := brw.ReadByte()
			if err != nil {
				got <- "read: " + err.Error()
				return
			}
			got <- string(b)
		}))
		for _, req := range []string{
			"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
		} {
			c, br := dial(t, addr)
			start := time.Now()
			fmt.Fprint(c, req)
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			pastDeadline(start)
			fmt.Fprint(c, "z")
			if s := <-got; s != "z" {
				t.Errorf("%q: the hijacker read %q after the header deadline, want z", req, s)
			}
		}
	})

	t.Run("slow handler then the next request", func(t *testing.T) {
		addr := startServer(t, &Server{Limits: limits}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				pastDeadline(time.Now())
			}
			_, _ = io.WriteString(w, r.URL.Path)
		}))
		c, br := dial(t, addr)
		fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := readResp(t, br, http.MethodGet); body != "/slow" {
			t.Fatalf("body %q", body)
		}
		fmt.Fprint(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := readResp(t, br, http.MethodGet); body != "/next" {
			t.Fatalf("body %q", body)
		}
	})

	t.Run("body after the header deadline", func(t *testing.T) {
		addr := startServer(t, &Server{Limits: limits}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			_, _ = w.Write(b)
		}))
		c, br := dial(t, addr)
		start := time.Now()
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
		pastDeadline(start)
		fmt.Fprint(c, "cd")
		if resp, body := readResp(t, br, http.MethodPost); resp.StatusCode != 200 || body != "abcd" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}

// TestHijackKeepsByteReadInBackground: a byte the client sent after the
// request while the handler ran (a CONNECT's optimistic TLS
// ClientHello), which the watch for the client leaving read, is in the
// hijacker's buffered reader (Buffered counts it), as with net/http;
// the gateway's CONNECT hands the connection on bare when Buffered is 0.
func TestHijackKeepsByteReadInBackground(t *testing.T) {
	started := make(chan struct{})
	got := make(chan string, 1)
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := w.(*response).c
		close(started)
		// The watch reads the byte backgroundReadDelay after the request.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(5 * time.Second)
		for taken := false; !taken; {
			select {
			case <-deadline:
				got <- "the background read did not take the byte"
				return
			case <-tick.C:
				c.bgMu.Lock()
				taken = c.src.has
				c.bgMu.Unlock()
			}
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		defer conn.Close()
		if n := brw.Reader.Buffered(); n != 1 {
			got <- fmt.Sprintf("%d bytes buffered", n)
			return
		}
		b, _ := brw.ReadByte()
		got <- string(b)
	}))
	c, _ := dial(t, addr)
	fmt.Fprint(c, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n")
	<-started
	fmt.Fprint(c, "\x16")
	if s := <-got; s != "\x16" {
		t.Fatalf("the hijacker got %q, want the byte sent after the request", s)
	}
}

// TestAdoptHeader: a response takes a header map over only in place of
// an empty one, before its header is written; the map is then its own
// (what the handler or the server sets shows in it), and the one it had
// is not changed.
func TestAdoptHeader(t *testing.T) {
	up := http.Header{"Content-Type": {"text/plain"}}
	w := &response{}
	if !w.AdoptHeader(up) {
		t.Fatal("a new response refused to adopt a header")
	}
	w.Header().Set("X-Set", "1")
	if up.Get("X-Set") != "1" || w.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("the adopted header is not the response's: %v, response %v", up, w.Header())
	}
	for name, prep := range map[string]func(*response){
		"a field set":     func(w *response) { w.Header().Set("X-Own", "1") },
		"header written":  func(w *response) { w.wroteHeader = true },
		"hijacked":        func(w *response) { w.hijacked = true },
		"another adopted": func(w *response) { w.AdoptHeader(http.Header{"X-First": {"1"}}) },
	} {
		w := &response{}
		prep(w)
		before := w.Header().Clone()
		other := http.Header{"X-Other": {"1"}}
		if w.AdoptHeader(other) {
			t.Errorf("%s: adopted a header", name)
		}
		if !reflect.DeepEqual(w.Header(), before) || len(other) != 1 {
			t.Errorf("%s: header %v after a refused adoption, want %v (the offered one %v untouched)", name, w.Header(), before, other)
		}
	}
	if (&response{}).AdoptHeader(nil) {
		t.Error("adopted a nil header")
	}
}
