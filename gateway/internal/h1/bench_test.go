package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
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

// BenchmarkIdleConnMemory reports the heap held per idle keep-alive
// connection after one request, once its wait was handed off (both ends
// of the loopback connection are in this process, so the figure includes
// the client's net.Conn).
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 2000
	s := &Server{Limits: Limits{MaxHeaderBytes: 1 << 20, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}}
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
	req := []byte("GET /v1/bench HTTP/1.1\r\nHost: api.example\r\n\r\n")
	for i := range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		open := make([]net.Conn, 0, conns)
		for range conns {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, c)
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		handedOff := int64(conns * (i + 1))
		poll.True(b, time.Minute, "every idle wait handed off", func() bool { return s.handoffs.Load() >= handedOff })
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric((float64(after.HeapInuse)-float64(before.HeapInuse))/conns, "heapB/conn")
		b.ReportMetric((float64(after.StackInuse)-float64(before.StackInuse))/conns, "stackB/conn")
		for _, c := range open {
			c.Close()
		}
	}
}
