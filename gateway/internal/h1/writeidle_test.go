package h1

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestWriteIdleTimeout: a handler's write to a client that reads nothing
// fails within Limits.WriteIdleTimeout (between it and 1.25 times it,
// plus what the socket buffers take first), whether the handler writes
// small pieces or one large write; once a handler hijacked the
// connection, the server's write deadline is gone: the hijacker writes
// for longer than the limit to a client that reads late.
func TestWriteIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	lim := Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, WriteIdleTimeout: idle}
	for _, size := range []int{1 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("writes of %d", size), func(t *testing.T) {
			failed := make(chan error, 1)
			addr := startServer(t, &Server{Limits: lim}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, size)
				for {
					if _, err := w.Write(buf); err != nil {
						failed <- err
						return
					}
				}
			}))
			c, _ := dial(t, addr)
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			select {
			case err := <-failed:
				if !isTimeout(err) {
					t.Errorf("the write failed with %v, want a timeout", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the handler still writes 10s after the client stopped reading")
			}
		})
	}
	t.Run("hijacked", func(t *testing.T) {
		wrote := make(chan error, 1)
		addr := startServer(t, &Server{Limits: lim}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/first" {
				_, _ = io.WriteString(w, "ok") // the server's write deadline is set
				return
			}
			nc, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				wrote <- err
				return
			}
			defer nc.Close()
			// More than the socket buffers hold: the write waits for
			// the client, which reads after 3 limits.
			_, err = nc.Write(make([]byte, 32<<20))
			wrote <- err
		}))
		c, br := dial(t, addr)
		fmt.Fprint(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := readResp(t, br, http.MethodGet); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("first request: %s %q", resp.Status, body)
		}
		fmt.Fprint(c, "GET /upgrade HTTP/1.1\r\nHost: x\r\n\r\n")
		<-time.After(3 * idle) // the client's pace
		if _, err := io.CopyN(io.Discard, br, 32<<20); err != nil {
			t.Fatal(err)
		}
		if err := <-wrote; err != nil {
			t.Errorf("the hijacker's write failed: %v", err)
		}
	})
}
