package h1

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
)

// parkedCount is how many connections s has parked.
func parkedCount(s *Server) int { return s.Parked() }

// TestParkedConnectionsHoldNoGoroutine: connections idle past the handoff
// wait without a goroutine each (the parker's one goroutine waits for
// them all), are each served again when their next request comes, and
// once the last one is gone the parker's goroutine and epoll instance
// are gone too.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 40
	s := handoffServer()
	addr := startServer(t, s, echoHandler)
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], brs[i] = dial(t, addr)
		fmt.Fprintf(conns[i], "GET /a%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		expectBody(t, brs[i], "GET", fmt.Sprintf(`GET /a%d ctx=tunnel body=""`, i))
	}
	waitHandoffs(t, s, n)
	waitFor(t, "every connection parked", func() bool { return parkedCount(s) == n })
	// The parker's goroutine, and a few of the runtime's and timers' at
	// most: not one per connection.
	waitFor(t, "no goroutine per idle connection", func() bool { return runtime.NumGoroutine()-before < 5 })

	// Each is served again, in an order other than the parking order.
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(conns[i], "GET /b%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	for i := range conns {
		expectBody(t, brs[i], "GET", fmt.Sprintf(`GET /b%d ctx=tunnel body=""`, i))
	}
	waitHandoffs(t, s, 2*n)
	waitFor(t, "every connection parked again", func() bool { return parkedCount(s) == n })

	for _, c := range conns {
		_ = c.Close()
	}
	waitForgotten(t, s)
	waitFor(t, "the parker's epoll instance closed", func() bool {
		s.parker.mu.Lock()
		defer s.parker.mu.Unlock()
		return s.parker.ep == nil
	})
	waitFor(t, "the parker's goroutine gone", func() bool { return runtime.NumGoroutine() <= before })
}

// TestParkedConnectionClosedUnderneath: a parked connection whose socket
// is closed by someone else (closing a descriptor drops it from epoll
// without an event) still ends, at its idle timeout, and a socket opened
// since that reuses its descriptor number is served as its own.
func TestParkedConnectionClosedUnderneath(t *testing.T) {
	s := handoffServer()
	s.Limits.IdleTimeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan *net.TCPConn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*net.TCPConn)
			go s.Serve(context.WithValue(context.Background(), ctxKey{}, "tunnel"), c.(*net.TCPConn), echoHandler)
		}
	}()
	c1, br1 := dial(t, ln.Addr().String())
	server1 := <-accepted
	fmt.Fprint(c1, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br1, "GET", `GET /a ctx=tunnel body=""`)
	waitFor(t, "the connection parked", func() bool { return parkedCount(s) == 1 })
	_ = server1.Close()

	// The next connection likely gets the closed socket's number.
	c2, br2 := dial(t, ln.Addr().String())
	<-accepted
	fmt.Fprint(c2, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br2, "GET", `GET /b ctx=tunnel body=""`)
	waitFor(t, "both parked", func() bool { return parkedCount(s) == 2 })
	fmt.Fprint(c2, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	expectBody(t, br2, "GET", `GET /c ctx=tunnel body=""`)
	// The second ends when its client closes it, the first at its idle
	// timeout.
	_ = c2.Close()
	waitForgotten(t, s)
}

// TestIdleHandoffWithoutParker: where epoll cannot be used the handed-off
// connection waits on a goroutine of its own, and is served on as well.
func TestIdleHandoffWithoutParker(t *testing.T) {
	s := handoffServer()
	s.parker.failed = true
	addr := startServer(t, s, echoHandler)
	c, br := dial(t, addr)
	for i := range 3 {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		expectBody(t, br, "GET", fmt.Sprintf(`GET /%d ctx=tunnel body=""`, i))
		waitHandoffs(t, s, int64(i+1))
	}
	if n := parkedCount(s); n != 0 {
		t.Fatalf("%d connections parked with the parker off", n)
	}
	_ = c.Close()
	waitForgotten(t, s)
}
