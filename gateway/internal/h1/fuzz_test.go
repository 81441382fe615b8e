package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzH1Conn feeds arbitrary bytes to the server over a real TCP
// connection, with a handler that reads bodies and answers with each
// framing (length, chunked, trailers, flushes, hijack). The server must
// never panic or hang, and what it writes must parse as HTTP responses.
func FuzzH1Conn(f *testing.F) {
	for _, s := range []string{
		"GET /cl HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /cl HTTP/1.1\r\nHost: a\r\n\r\n",
		"PUT /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
		"POST /unread HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789GET /cl HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /hijack HTTP/1.1\r\nHost: a\r\n\r\nrest",
		"GET /empty HTTP/1.0\r\n\r\n",
		"GET /flush HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n",
		"\r\n\r\nGARBAGE\r\n",
	} {
		f.Add([]byte(s))
	}
	s := &Server{Limits: Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/unread" {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		}
		switch r.URL.Path {
		case "/cl":
			if r.Method != http.MethodHead {
				w.Header().Set("Content-Length", "5")
			}
			_, _ = io.WriteString(w, "hello")
		case "/chunked", "/flush":
			_, _ = io.WriteString(w, "a")
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "b")
		case "/trailer":
			w.Header().Set("Trailer", "X-T")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-T", "v")
			w.Header().Set(http.TrailerPrefix+"X-U", "u")
		case "/hijack":
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_ = c.Close()
		case "/informational":
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.Serve(context.Background(), c.(*net.TCPConn), handler)
		}
	}()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = c.Write(data)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("the server neither answered nor closed within 10s for %q", data)
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err) {
					return
				}
				t.Fatalf("unparseable response for %q: %v", data, err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil && isTimeout(err) {
				t.Fatalf("response body never ended for %q", data)
			}
		}
	})
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}
