package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// TestClientLeavesMidResponse: a client that goes away while the upstream
// is still sending the body (a stream the origin trickles without end)
// cancels the upstream request — the origin's request context ends — over
// HTTP/1.1 and HTTP/2 (clients and upstreams, upstream.http2: match), for
// a request the gateway's HTTP/1.1 client sends (GET) and one net/http's
// transports send (a chunked POST). Its audit line keeps the status sent
// (200) with code client_aborted — the client's doing, as when it leaves
// before the answer (TestH1ClientLeavesLongPoll) or mid-body
// (TestClientLeavesMidBody); before, 4 of 4 were audited upstream_error,
// blaming a healthy upstream. Once the connections on both sides are
// closed the gateway's goroutines are back to their count before: nothing
// is left reading an upstream for a client that is gone.
func TestClientLeavesMidResponse(t *testing.T) {
	tg := startGateway(t)
	var active atomic.Int64
	drip := func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		_, _ = io.Copy(io.Discard, r.Body)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range 4000 { // 20 s at most
			if _, err := io.WriteString(w, "data: "+strings.Repeat("x", 100)+"\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}
	var clients []*http.Client
	settled := func(n int) bool {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		tg.gw.pools.Load().closeIdle()
		return runtime.NumGoroutine() <= n
	}
	// A warm-up request on each protocol starts what the gateway starts
	// once (watchers, sweepers), so that base counts it.
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		clients = append(clients, c)
		resp, err := c.Get("https://" + apiHost + "/v1/warm-up")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitFor(t, 10*time.Second, "the warm-up's connections closed", func() bool { return settled(40) })
	base := runtime.NumGoroutine()
	for _, h2 := range []bool{false, true} {
		for _, post := range []bool{false, true} {
			path := fmt.Sprintf("/v1/drip/%v/%v", h2, post)
			tg.origin.route(path, drip)
			c := tg.client(t, h2)
			clients = append(clients, c)
			t.Run(fmt.Sprintf("h2=%v/post=%v", h2, post), func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				method, body := http.MethodGet, io.Reader(nil)
				if post {
					method, body = http.MethodPost, io.MultiReader(strings.NewReader("x")) // chunked
				}
				req, _ := http.NewRequestWithContext(ctx, method, "https://"+apiHost+path, body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
					t.Fatalf("the stream's start: %v", err)
				}
				if active.Load() != 1 {
					t.Fatalf("%d origin requests streaming, want 1", active.Load())
				}
				cancel()
				resp.Body.Close()
				c.CloseIdleConnections()
				if !poll.Within(5*time.Second, func() bool { return active.Load() == 0 }) {
					t.Fatal("the upstream request was not cancelled within 5s of the client leaving")
				}
			})
			var ev map[string]any
			waitFor(t, 10*time.Second, "the audit line of "+path, func() bool {
				ev = auditFor(tg, path)
				return ev != nil
			})
			if ev["status"] != float64(http.StatusOK) || ev["code"] != codeRequestBodyAborted {
				t.Errorf("%s audited with status %v code %v, want 200 (the status sent) %s: the client's doing, not the upstream's", path, ev["status"], ev["code"], codeRequestBodyAborted)
			}
		}
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("the goroutines back to %d", base), func() bool { return settled(base) })
}
