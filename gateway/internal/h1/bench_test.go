package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkServeKeepAlive measures the server alone: one small request
// and response on a warm keep-alive loopback connection per goroutine
// (no TLS, no gateway). BenchmarkInjectKeepAlive in gateway/ has the
// whole intercepted path.
func BenchmarkServeKeepAlive(b *testing.B) {
	s := &Server{Limits: Limits{MaxHeaderBytes: 1 << 20, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"2"}
		_, _ = io.WriteString(w, "ok")
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.Serve(context.Background(), c.(*net.TCPConn), h)
		}
	}()
	req := []byte("GET /v1/bench HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
