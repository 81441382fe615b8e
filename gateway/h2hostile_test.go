package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"golang.org/x/net/http2"
)

const evilHost = "evil.origin.test"

const hostilePolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  evil: {hosts: [evil.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - {name: api, from: local, to: api, inject: {credential: token, as: bearer}}
  - {name: evil, from: local, to: evil, inject: {credential: token, as: bearer}}
default: deny
`

// hostileCase is one behaviour of a hostile HTTP/2 origin
// (TestHTTP2HostileOrigin): its first SETTINGS, how it answers a
// request, the status the client must get and the request body sent.
type hostileCase struct {
	name     string
	settings []http2.Setting
	b        func(c *h2OriginConn, f *http2.MetaHeadersFrame)
	// status is what the client must get (0: any answer, as long as it
	// comes in time); failed: 502 or 504; broken: the response breaks
	// off after its headers. orFailed: the answer may instead be 502 or
	// 504 — an origin's failure is a race with the gateway's progress
	// (headers still arriving at response_header_timeout on a loaded
	// machine; a body that breaks before the gateway sent the head on,
	// which it then answers 502 rather than a 200 that breaks).
	status   int
	failed   bool
	broken   bool
	orFailed bool
	body     string
}

// hostileOriginCases are what an HTTP/2 origin can do that Go's server
// never would, each answering every request the same way.
func hostileOriginCases() []hostileCase {
	goaway := func(last uint32, closeConn bool) func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
		return func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			c.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
			if closeConn {
				_ = c.c.Close()
			}
		}
	}
	reset := func(code http2.ErrCode) func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
		return func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(f.StreamID, code) })
		}
	}
	ok := func(c *h2OriginConn, f *http2.MetaHeadersFrame) { c.respond(f.StreamID, "200", "ok") }
	return []hostileCase{
		// GOAWAY saying the request was not processed (last stream ID
		// 0), the connection left open or closed: Go's transport sent
		// it again on a new connection, without end.
		{name: "goaway_unprocessed", b: goaway(0, false), status: http.StatusBadGateway},
		{name: "goaway_unprocessed_close", b: goaway(0, true), status: http.StatusBadGateway},
		// GOAWAY claiming every stream was processed, then closing
		// without an answer: not retried.
		{name: "goaway_lie_processed", b: goaway(1<<31-1, true), status: http.StatusBadGateway},
		// Resets Go's transport retries: REFUSED_STREAM (on the same
		// connection, with backoff) and PROTOCOL_ERROR (a new one).
		{name: "refused_stream", b: reset(http2.ErrCodeRefusedStream), status: http.StatusGatewayTimeout},
		{name: "rst_protocol_error", b: reset(http2.ErrCodeProtocol), status: http.StatusBadGateway},
		{name: "rst_internal_error", b: reset(http2.ErrCodeInternal), status: http.StatusBadGateway},
		{name: "close_without_goaway", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) { _ = c.c.Close() }, status: http.StatusBadGateway},
		// A connection that can take no stream: the transport dials
		// again for each try.
		{name: "max_concurrent_streams_0", settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}, b: ok},
		// Server push is off (SETTINGS_ENABLE_PUSH 0): a PUSH_PROMISE
		// is a connection error.
		{name: "push_promise", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			blk := c.block([2]string{":method", "GET"}, [2]string{":scheme", "https"}, [2]string{":authority", evilHost}, [2]string{":path", "/pushed"})
			c.write(func(fr *http2.Framer) error {
				return fr.WritePushPromise(http2.PushPromiseParam{StreamID: f.StreamID, PromiseID: 2, BlockFragment: blk, EndHeaders: true})
			})
			c.respond(f.StreamID, "200", "ok")
		}, status: http.StatusBadGateway},
		// A header block that never ends: empty CONTINUATION frames
		// without END_HEADERS, as fast as they go.
		{name: "endless_continuation", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			blk := c.block([2]string{":status", "200"})
			go func() {
				if !c.write(func(fr *http2.Framer) error {
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: blk})
				}) {
					return
				}
				for {
					select {
					case <-c.done:
						return
					default:
					}
					if !c.write(func(fr *http2.Framer) error { return fr.WriteContinuation(f.StreamID, false, nil) }) {
						return
					}
				}
			}()
		}, failed: true},
		// Response headers (2 MiB in CONTINUATION frames) and trailers
		// over the transport's 1 MiB limit.
		{name: "huge_headers", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			c.writeBlock(f.StreamID, true, c.block([2]string{":status", "200"}, [2]string{"x-big", strings.Repeat("a", 2<<20)}))
		}, failed: true},
		{name: "huge_trailers", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			hdr := c.block([2]string{":status", "200"})
			c.write(func(fr *http2.Framer) error {
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hdr, EndHeaders: true}); err != nil {
					return err
				}
				return fr.WriteData(f.StreamID, false, []byte("body"))
			})
			fields := make([][2]string, 0, 4096)
			for i := range 4096 {
				fields = append(fields, [2]string{fmt.Sprintf("x-t%d", i), strings.Repeat("t", 512)})
			}
			c.writeBlock(f.StreamID, true, c.block(fields...))
		}, status: http.StatusOK, broken: true, orFailed: true},
		// Headers, then a reset: the client's response breaks off.
		{name: "rst_after_headers", b: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
			blk := c.block([2]string{":status", "200"})
			c.write(func(fr *http2.Framer) error {
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: blk, EndHeaders: true}); err != nil {
					return err
				}
				return fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
			})
		}, status: http.StatusOK, broken: true},
		// Extreme SETTINGS: the largest frames and window, the smallest
		// frames and a 0 header table; answered normally.
		{name: "settings_largest", settings: []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1}, {ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}, {ID: http2.SettingHeaderTableSize, Val: 1<<32 - 1}}, b: ok, status: http.StatusOK, body: strings.Repeat("b", 64<<10)},
		{name: "settings_smallest", settings: []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 16384}, {ID: http2.SettingHeaderTableSize, Val: 0}, {ID: http2.SettingMaxHeaderListSize, Val: 1}}, b: ok},
		// No flow-control window for the request body, and no answer.
		// (A small body the gateway read whole, a large one it could not.)
		{name: "zero_window_request_body", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, b: func(*h2OriginConn, *http2.MetaHeadersFrame) {}, body: "a body the upstream gives no window for", status: http.StatusGatewayTimeout},
		{name: "zero_window_large_body", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, b: func(*h2OriginConn, *http2.MetaHeadersFrame) {}, body: strings.Repeat("w", 256<<10), status: http.StatusGatewayTimeout},
		// Nothing at all after the request.
		{name: "silent", b: func(*h2OriginConn, *http2.MetaHeadersFrame) {}, status: http.StatusGatewayTimeout},
	}
}

// TestHTTP2HostileOrigin: whatever an HTTP/2 origin does with the
// gateway's requests (GOAWAY and resets that say the request was not
// processed, push, endless or oversized header blocks, extreme SETTINGS,
// no flow-control window, silence), the client gets an answer within
// about upstream.response_header_timeout (2s here), the request (with its
// credential) is sent at most upstreamAttempts+1 times, the gateway's
// goroutines return to what they were, and other clients are served
// meanwhile. Over HTTP/2 and HTTP/1.1 clients (bridged: the origin speaks
// h2 alone), with and without a body. Before, an origin answering every
// request with a GOAWAY (last stream 0) or a PROTOCOL_ERROR reset had it
// sent again on a new connection without end (over 5000 times in 12 s,
// each with the credential), and one refusing streams held the client
// 63 s, past response_header_timeout.
func TestHTTP2HostileOrigin(t *testing.T) {
	const headerTimeout = 2 * time.Second
	pki := newTestPKI(t, apiHost, evilHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	var mu sync.Mutex
	var behave func(c *h2OriginConn, f *http2.MetaHeadersFrame)
	evil := startH2Origin(t, pki, &h2Origin{want: tg.token, onHeaders: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
		mu.Lock()
		b := behave
		mu.Unlock()
		b(c, f)
	}})
	writeFile(t, tg.dir, "policy.yaml", []byte(hostilePolicy))
	tg.upstreamExtra = fmt.Sprintf(", response_header_timeout: %s, response_idle_timeout: %s", headerTimeout, headerTimeout/2)
	tg.run(t, fmt.Sprintf("resolve: {%q: %q, %q: %q}\n", apiHost+":443", tg.origin.addr, evilHost+":443", evil.addr))

	settled := func(n int) bool {
		tg.gw.pools.Load().closeIdle()
		return runtime.NumGoroutine() <= n
	}
	good := func(c *http.Client) error {
		resp, err := c.Get("https://" + apiHost + "/v1/good")
		if err != nil {
			return fmt.Errorf("another client's request: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("another client's request: status %d", resp.StatusCode)
		}
		return nil
	}
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		if err := good(c); err != nil {
			t.Fatal(err)
		}
		c.CloseIdleConnections()
	}
	waitFor(t, 10*time.Second, "the warm-up's connections closed", func() bool { return settled(30) })
	base := runtime.NumGoroutine()

	for _, tc := range hostileOriginCases() {
		for _, h2 := range []bool{true, false} {
			for _, method := range []string{"GET", "POST"} {
				t.Run(fmt.Sprintf("%s/h2=%v/%s", tc.name, h2, method), func(t *testing.T) {
					mu.Lock()
					behave = tc.b
					mu.Unlock()
					evil.setSettings(tc.settings...)
					evil.requests.Store(0)
					evil.withCred.Store(0)
					evil.conns.Store(0)
					c := tg.client(t, h2)
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					var body io.Reader
					if method == "POST" {
						body = strings.NewReader(tc.body)
					}
					path := fmt.Sprintf("/v1/%s/%v/%s", tc.name, h2, method)
					req, _ := http.NewRequestWithContext(ctx, method, "https://"+evilHost+path, body)
					// Another client is served while this one waits.
					oc := tg.client(t, !h2)
					other := make(chan error, 1)
					go func() { other <- good(oc) }()
					t0 := time.Now()
					resp, err := c.Do(req)
					status := 0
					var bodyErr error
					if err == nil {
						status = resp.StatusCode
						_, bodyErr = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					d := time.Since(t0)
					if err := <-other; err != nil {
						t.Error(err)
					}
					c.CloseIdleConnections()
					oc.CloseIdleConnections()
					t.Logf("status %d err %v body err %v in %v; origin conns %d requests %d with credential %d",
						status, err, bodyErr, d.Round(time.Millisecond), evil.conns.Load(), evil.requests.Load(), evil.withCred.Load())
					if err != nil {
						t.Fatalf("no answer: %v after %v", err, d.Round(time.Millisecond))
					}
					if d > 2*headerTimeout+time.Second {
						t.Errorf("answered after %v, want within about response_header_timeout (%v)", d.Round(time.Millisecond), headerTimeout)
					}
					failedInstead := tc.orFailed && (status == http.StatusBadGateway || status == http.StatusGatewayTimeout)
					if tc.status != 0 && status != tc.status && !failedInstead {
						t.Errorf("status %d, want %d", status, tc.status)
					}
					if tc.failed && status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
						t.Errorf("status %d, want 502 or 504", status)
					}
					if tc.broken != (bodyErr != nil) && !failedInstead {
						t.Errorf("body error %v, want broken %v", bodyErr, tc.broken)
					}
					switch status {
					case http.StatusBadGateway:
						wantAudited(t, tg, path, status, codeUpstreamError)
					case http.StatusGatewayTimeout:
						wantAudited(t, tg, path, status, codeUpstreamTimeout)
					}
					if n := evil.withCred.Load(); n > upstreamAttempts+1 {
						t.Errorf("the credential was sent %d times, want at most %d", n, upstreamAttempts+1)
					}
					if n := evil.requests.Load(); n > upstreamAttempts+1 {
						t.Errorf("the request was sent %d times, want at most %d", n, upstreamAttempts+1)
					}
				})
			}
		}
	}
	if !poll.Within(10*time.Second, func() bool { return settled(base + 5) }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d, base %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
}
