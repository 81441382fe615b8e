package h1

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// TestWatchListClientsLeaving is the class test of the server's one
// watch timer: on many connections whose handlers start one after
// another and whose clients leave in another order (the list loses
// entries at its head, middle and tail, and the timer fires for
// connections that already left), every handler still running is told
// its client left (its context is cancelled), every handler that
// returned leaves nothing in the list, and the next request on a
// connection whose handler outlived the delay is served as usual.
func TestWatchListClientsLeaving(t *testing.T) {
	const n = 8
	s := &Server{}
	s.watches.delay = 20 * time.Millisecond
	started := make(chan string, n)
	cancelled := make(chan string, n)
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/wait/") {
			fmt.Fprint(w, "ok")
			return
		}
		started <- r.URL.Path
		select {
		case <-r.Context().Done():
			cancelled <- r.URL.Path
		case <-time.After(10 * time.Second):
		}
	}))
	conns := make([]net.Conn, n)
	for i := range conns {
		c, br := dial(t, addr)
		conns[i] = c
		// A quick request first: its watch ends before the delay.
		fmt.Fprint(c, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%s %q", resp.Status, body)
		}
	}
	if !poll.Within(5*time.Second, func() bool { m, _ := s.watches.watched(); return m == 0 }) {
		t.Fatal("connections whose handler returned are still watched")
	}
	for i, c := range conns {
		fmt.Fprintf(c, "GET /wait/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		<-started
	}
	// The clients leave in an order unlike the one their watches began
	// in: odd ones first, then the even ones from the last.
	order := []int{1, 3, 5, 7, 6, 4, 2, 0}
	for _, i := range order {
		conns[i].Close()
	}
	seen := map[string]bool{}
	for range n {
		select {
		case p := <-cancelled:
			seen[p] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("handlers told their client left: %v of %d", seen, n)
		}
	}
	if !poll.Within(5*time.Second, func() bool { m, _ := s.watches.watched(); return m == 0 }) {
		t.Fatal("connections still watched after every handler returned")
	}
}

// TestWatchListOneTimer: requests answered quickly, one after another,
// set the server's watch timer once, not once a request: setting a timer
// that is the earliest one wakes an idle runtime thread, which a
// per-request timer did on the critical path of nearly every request.
func TestWatchListOneTimer(t *testing.T) {
	s := &Server{}
	s.watches.delay = time.Minute // it does not fire during the test
	addr := startServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	c, br := dial(t, addr)
	const requests = 100
	for range requests {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%s %q", resp.Status, body)
		}
	}
	if n, sets := s.watches.watched(); n != 0 || sets != 1 {
		t.Errorf("after %d requests: %d connections watched, the timer set %d times; want 0 and once", requests, n, sets)
	}
}
