package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// promptly bounds how long an answer the tests expect "at once" may take.
// The failures these tests guard against took 12.8 s or more (an answer
// held until the upload ended, a long poll run on to the 60 s header
// timeout, an ordering that hung until a timeout) or lost the status to a
// reset, which the status checks catch; correct answers take milliseconds
// but were seen at 1.1-2.1 s under -race with make test's other packages
// on 2 cores, so the bound leaves room for a loaded machine.
const promptly = 5 * time.Second

// earlyHandler answers /early/<status> without reading the request body
// (an origin refusing an upload: 413, 401); anything else reads the body
// and answers its length.
func earlyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, ok := strings.CutPrefix(r.URL.Path, "/early/"); ok {
			status, _ := strconv.Atoi(code)
			http.Error(w, "refused", status)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "len=%d", n)
	})
}

// uploadClient sends a size-byte upload to path and returns the status it
// got (0 and an error when it got none).
type uploadClient func(t *testing.T, addr, path string, size int) (int, error)

// rawUpload writes the header, then the body from another goroutine in
// pieces of piece bytes with pause between them (a slow uploader when
// pause > 0), reading the response meanwhile, as curl does.
func rawUpload(piece int, pause time.Duration) uploadClient {
	return func(t *testing.T, addr, path string, size int) (int, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", path, size); err != nil {
			return 0, err
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			buf := make([]byte, piece)
			for left := size; left > 0; left -= piece {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				if _, err := c.Write(buf[:min(piece, left)]); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
}

// goUpload is Go's net/http client (a new connection per upload).
func goUpload(t *testing.T, addr, path string, size int) (int, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post("http://"+addr+path, "application/octet-stream", bytes.NewReader(make([]byte, size)))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestEarlyAnswerToUpload: an answer given before the body was read
// reaches the client promptly and every time, whatever the body's size
// and however the client sends it: the response is sent before the rest
// of the body is waited for, and the connection is half-closed and
// drained, not reset, when it cannot be kept.
func TestEarlyAnswerToUpload(t *testing.T) {
	addr := startServer(t, &Server{}, earlyHandler())
	clients := map[string]uploadClient{
		"raw-slow":  rawUpload(1<<10, 5*time.Millisecond),
		"raw-blast": rawUpload(1<<20, 0),
		"go":        goUpload,
	}
	for _, size := range []int{1 << 10, 300 << 10, 8 << 20} {
		for _, status := range []int{http.StatusRequestEntityTooLarge, http.StatusUnauthorized} {
			for name, client := range clients {
				t.Run(fmt.Sprintf("%s/%d/%dKiB", name, status, size>>10), func(t *testing.T) {
					for try := range 10 {
						start := time.Now()
						got, err := client(t, addr, fmt.Sprintf("/early/%d", status), size)
						if took := time.Since(start); err != nil || got != status || took > promptly {
							t.Fatalf("try %d: status %d (%v) after %s, want %d within %s", try, got, err, took.Round(time.Millisecond), status, promptly)
						}
					}
				})
			}
		}
	}
}

// TestExpectContinue: 100 Continue goes to the client only when the
// handler reads the body; a handler that answers without reading it gets
// no body sent, and the connection closes after the answer (the client
// never sent the body it announced).
func TestExpectContinue(t *testing.T) {
	addr := startServer(t, &Server{}, earlyHandler())
	t.Run("refused", func(t *testing.T) {
		c, br := dial(t, addr)
		fmt.Fprint(c, "PUT /early/413 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := readResp(t, br, "PUT")
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
			t.Fatalf("%s close=%v, want 413 (no 100 Continue) and close", resp.Status, resp.Close)
		}
		expectClosed(t, c, br, 3*time.Second)
	})
	t.Run("accepted", func(t *testing.T) {
		c, br := dial(t, addr)
		fmt.Fprint(c, "PUT /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		interim, err := http.ReadResponse(br, nil)
		if err != nil || interim.StatusCode != http.StatusContinue {
			t.Fatalf("want 100 Continue first: %v %v", interim, err)
		}
		fmt.Fprint(c, "hello")
		if resp, body := readResp(t, br, "PUT"); resp.StatusCode != 200 || body != "len=5" || resp.Close {
			t.Fatalf("%s %q close=%v, want 200 len=5 kept alive", resp.Status, body, resp.Close)
		}
	})
	t.Run("header-kept", func(t *testing.T) {
		// The handler sees Expect, to pass it on: the upstream decides.
		saw := make(chan string, 1)
		addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			saw <- r.Header.Get("Expect")
		}))
		c, br := dial(t, addr)
		fmt.Fprint(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		readResp(t, br, "PUT")
		if got := <-saw; got != "100-continue" {
			t.Fatalf("handler saw Expect %q, want 100-continue", got)
		}
	})
}

// TestClientLeavesWhileHandlerWaits: a client that closes the connection
// while the handler waits (a long poll upstream) cancels the request's
// context, with or without a request body; a pipelined request read by
// the watch is served next, and the context stays live.
func TestClientLeavesWhileHandlerWaits(t *testing.T) {
	cancelled := make(chan time.Duration, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/poll" {
			fmt.Fprintf(w, "ok %s", r.URL.Path)
			return
		}
		start := time.Now()
		select {
		case <-r.Context().Done():
			cancelled <- time.Since(start)
		case <-time.After(10 * time.Second):
		}
	})
	addr := startServer(t, &Server{}, h)
	for name, req := range map[string]string{
		"get":  "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n",
		"post": "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := dial(t, addr)
			fmt.Fprint(c, req)
			time.AfterFunc(200*time.Millisecond, func() { c.Close() })
			select {
			case d := <-cancelled:
				if d > promptly {
					t.Fatalf("cancelled %s after the request, want within %s of the close", d, promptly)
				}
			case <-time.After(2 * promptly):
				t.Fatal("the handler's context was not cancelled")
			}
		})
	}
	t.Run("pipelined-kept", func(t *testing.T) {
		var hits atomic.Int32
		addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				// Longer than backgroundReadDelay: the watch reads the
				// next request's first byte.
				select {
				case <-r.Context().Done():
					t.Error("context cancelled by a pipelined request")
				case <-time.After(200 * time.Millisecond):
				}
			}
			fmt.Fprintf(w, "ok %s", r.URL.Path)
		}))
		c, br := dial(t, addr)
		fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		// The second request arrives while the first handler runs.
		time.AfterFunc(100*time.Millisecond, func() { fmt.Fprint(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n") })
		for _, want := range []string{"ok /slow", "ok /next"} {
			if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != want {
				t.Fatalf("%s %q, want 200 %q", resp.Status, body, want)
			}
		}
	})
}

// TestWatchDoesNotCancelKeptContext: after a long handler on a kept-alive
// connection, the next request's context is live.
func TestWatchDoesNotCancelKeptContext(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(150 * time.Millisecond) // the handler's own work
		}
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "live")
	}))
	c, br := dial(t, addr)
	for _, p := range []string{"/slow", "/slow", "/fast"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p)
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "live" {
			t.Fatalf("%s: %s %q", p, resp.Status, body)
		}
	}
}

// TestEarlyAnswerWhileBodyReadBlocks: the ordering that hung until a
// timeout. The handler answers while another goroutine (the gateway's
// upstream transport) is still blocked reading the body from a client
// that sent part of it and waits for the answer before sending more.
func TestEarlyAnswerWhileBodyReadBlocks(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { _, _ = io.Copy(io.Discard, r.Body) }()
		http.Error(w, "refused", http.StatusRequestEntityTooLarge)
	}))
	for _, size := range []int{10 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("%dKiB", size>>10), func(t *testing.T) {
			c, br := dial(t, addr)
			start := time.Now()
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
			_, _ = c.Write(make([]byte, 1<<10))
			_ = c.SetReadDeadline(time.Now().Add(promptly))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("after %s: %v %v, want 413 within %s", time.Since(start).Round(time.Millisecond), resp, err, promptly)
			}
		})
	}
}
