package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// respIdlePolicy injects the test credential under /scrub/ (its echo
// scrubbed from responses, the default), /plain/ (scrub off) and
// /custody/ (a JSON field of the response kept in custody, which reads
// the body whole before its headers go to the client).
const respIdlePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: scrubbed
    from: local
    to: api
    paths: [/scrub/*]
    inject: {credential: token, as: bearer}
  - name: plain
    from: local
    to: api
    paths: [/plain/*]
    inject: {credential: token, as: bearer}
    scrub: {enabled: false}
  - name: custody
    from: local
    to: api
    paths: [/custody/*]
    inject: {credential: token, as: bearer}
    custody: {json: [$.token]}
  - name: ws
    from: local
    to: api
    paths: [/ws, /ws-stall]
    inject: {credential: token, as: bearer}
default: deny
`

// respIdle is the test's upstream.response_idle_timeout.
const respIdle = 200 * time.Millisecond

// startRespIdleGateway runs a gateway with upstream.response_idle_timeout
// respIdle in front of the test origin, under respIdlePolicy.
func startRespIdleGateway(t *testing.T) *testGateway {
	t.Helper()
	return startRespIdleGatewayWith(t, respIdlePolicy)
}

// startRespIdleGatewayWith is startRespIdleGateway under policy.
func startRespIdleGatewayWith(t *testing.T, policy string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	tg.upstreamExtra = fmt.Sprintf(", response_idle_timeout: %s", respIdle)
	writeFile(t, tg.dir, "policy.yaml", []byte(policy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	return tg
}

// stallingRoute makes path answer 200 with a JSON body of 64 bytes
// announced, of which it sends the first `sent` (none, or a part), and
// then nothing until the upstream request is cancelled; it returns a
// channel closed when it was, and the protocol the origin saw.
func stallingRoute(tg *testGateway, path string, sent int) (cancelled <-chan struct{}, proto func() string) {
	done := make(chan struct{})
	var mu sync.Mutex
	var p string
	tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		p = r.Proto
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		body := `{"token":"` + strings.Repeat("v", 64-len(`{"token":""}`)) + `"}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body[:sent])
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // the gateway cancelled the upstream request
		close(done)
	})
	return done, func() string {
		mu.Lock()
		defer mu.Unlock()
		return p
	}
}

// TestResponseIdleTimeout is the class of "the upstream sends the
// response's headers, then stops sending its body without closing":
// over an HTTP/1.1 and an HTTP/2 client, through the gateway's own
// HTTP/1.1 upstream client (an HTTP/1.1 client's small GET) and
// net/http's Transport (a chunked POST; every HTTP/2 client's request),
// with the response scrubbed or not, stalled before its first body byte
// or in the middle, the upstream request is cancelled after
// upstream.response_idle_timeout (the origin sees its context end), the
// client's response is cut (an error reading the body, never a clean
// end), the audit line says 200 upstream_idle, and
// credgate_refusals_total{code="upstream_idle"} counts each. A response
// kept in custody, whose body the gateway reads whole before it sends
// the headers, is answered 504 upstream_idle instead. Before, each of
// them hung until the client gave up.
func TestResponseIdleTimeout(t *testing.T) {
	tg := startRespIdleGateway(t)
	n := 0
	for _, h2 := range []bool{false, true} {
		for _, post := range []bool{false, true} {
			for _, rule := range []string{"scrub", "plain", "custody"} {
				for _, mid := range []bool{false, true} {
					name := fmt.Sprintf("h2=%v/post=%v/%s/mid=%v", h2, post, rule, mid)
					path := fmt.Sprintf("/%s/h2-%v-post-%v-mid-%v", rule, h2, post, mid)
					t.Run(name, func(t *testing.T) {
						sent := 0
						if mid {
							sent = 20
						}
						cancelled, proto := stallingRoute(tg, path, sent)
						var body io.Reader
						method := http.MethodGet
						if post {
							// Unknown length (chunked on HTTP/1.1), larger
							// than the h1client sends: net/http's Transport.
							method, body = http.MethodPost, struct{ io.Reader }{strings.NewReader(strings.Repeat("b", 20<<10))}
						}
						req, _ := http.NewRequest(method, "https://"+apiHost+path, body)
						t0 := time.Now()
						resp, err := tg.client(t, h2).Do(req)
						if err != nil {
							t.Fatal(err)
						}
						got, rerr := io.ReadAll(resp.Body)
						resp.Body.Close()
						took := time.Since(t0)
						if rule == "custody" {
							if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(ReasonHeader) != codeUpstreamIdle {
								t.Errorf("client saw %s %s, want 504 %s", resp.Status, resp.Header.Get(ReasonHeader), codeUpstreamIdle)
							}
						} else {
							if resp.StatusCode != http.StatusOK || rerr == nil {
								t.Errorf("client saw %s, body %q, read error %v; want 200 and the body cut (an error)", resp.Status, got, rerr)
							}
							if len(got) > sent {
								t.Errorf("client read %d bytes, the upstream sent %d", len(got), sent)
							}
						}
						if took < respIdle {
							t.Errorf("cut after %s, before response_idle_timeout %s", took, respIdle)
						}
						select {
						case <-cancelled:
						case <-time.After(10 * time.Second):
							t.Fatal("the upstream request was not cancelled")
						}
						want := "HTTP/1.1"
						if h2 {
							want = "HTTP/2.0"
						}
						if p := proto(); p != want {
							t.Errorf("origin saw %s, want %s", p, want)
						}
						status := http.StatusOK
						if rule == "custody" {
							status = http.StatusGatewayTimeout
						}
						wantAudited(t, tg, path, status, codeUpstreamIdle)
					})
					n++
				}
			}
		}
	}
	want := fmt.Sprintf(`credgate_refusals_total{code="upstream_idle"} %d`, n)
	if got := metric(t, tg, `credgate_refusals_total{code="upstream_idle"}`); got != want {
		t.Errorf("metrics: %q, want %q", got, want)
	}
}

// TestResponseIdleTimeoutSpares: what is not an upstream stall is not
// cut. A client that stops reading a large fast response for several
// times response_idle_timeout (the gateway waits to write, not on the
// upstream) gets all of it; an upstream that sends a byte every half
// response_idle_timeout (an SSE stream's keep-alive comments) is relayed
// whole; a WebSocket idle for longer stays open (limits.long_lived
// bounds it); each over HTTP/1.1 and HTTP/2 clients where that applies.
func TestResponseIdleTimeoutSpares(t *testing.T) {
	// Without the custody rule: its placeholders are tripwires searched
	// for in WebSocket frames, and the test's WebSocket (openLongClient)
	// speaks lines, not frames, which the frame reader would end.
	i := strings.Index(respIdlePolicy, "  - name: custody\n")
	j := strings.Index(respIdlePolicy, "  - name: ws\n")
	tg := startRespIdleGatewayWith(t, respIdlePolicy[:i]+respIdlePolicy[j:])
	const big = 8 << 20 // more than the socket buffers and HTTP/2 windows hold
	tg.origin.route("/plain/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(big))
		_, _ = io.Copy(w, io.LimitReader(zeros{}, big))
	})
	const trickled = 6
	tg.origin.route("/plain/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(respIdle / 2) // the upstream's pace
		defer tick.Stop()
		for range trickled {
			_, _ = io.WriteString(w, ":")
			_ = rc.Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow reader/h2=%v", h2), func(t *testing.T) {
			path := fmt.Sprintf("/plain/big?h2=%v", h2)
			resp, err := tg.client(t, h2).Get("https://" + apiHost + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := io.ReadFull(resp.Body, make([]byte, 1<<10)); err != nil {
				t.Fatal(err)
			}
			<-time.After(4 * respIdle) // the client's pace: it reads nothing meanwhile
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != big-1<<10 {
				t.Fatalf("read %d more bytes, %v; want the rest, %d", n, err, big-1<<10)
			}
			wantAudited(t, tg, "/plain/big", http.StatusOK, "")
			tg.audit.Reset() // the next case's line is the only one
		})
		t.Run(fmt.Sprintf("trickle/h2=%v", h2), func(t *testing.T) {
			resp, err := tg.client(t, h2).Get("https://" + apiHost + "/plain/trickle")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != strings.Repeat(":", trickled) {
				t.Fatalf("read %q, %v; want %d bytes", got, err, trickled)
			}
			wantAudited(t, tg, "/plain/trickle", http.StatusOK, "")
			tg.audit.Reset()
		})
	}
	t.Run("websocket", func(t *testing.T) {
		lc := openLongClient(t, tg, kindWebSocket, "")
		defer lc.c.Close()
		if !lc.alive() {
			t.Fatal("the WebSocket does not echo")
		}
		if lc.closedByGateway(4 * respIdle) { // idle for the client's pace
			t.Fatal("the gateway closed an idle WebSocket after upstream.response_idle_timeout")
		}
		if !lc.alive() {
			t.Fatal("the WebSocket does not echo after idling")
		}
	})
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestResponseIdleTimeoutRefusedUpgrade: a WebSocket upgrade request the
// upstream answers with an ordinary response (200 and a body, not 101)
// is relayed as one, and its stalled body is cut like any other's
// (upstream_idle), before its first byte or in the middle. Before, the
// watch was only armed for requests that were not upgrades, and such a
// response hung until the client gave up.
func TestResponseIdleTimeoutRefusedUpgrade(t *testing.T) {
	for _, sent := range []int{0, 20} {
		t.Run(fmt.Sprintf("sent=%d", sent), func(t *testing.T) {
			tg := startRespIdleGateway(t)
			cancelled, _ := stallingRoute(tg, "/ws-stall", sent)
			tc, br := h1Tunnel(t, tg)
			t0 := time.Now()
			fmt.Fprintf(tc, "GET /ws-stall HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || rerr == nil || len(got) > sent {
				t.Errorf("client saw %s, %d bytes, read error %v; want 200 and at most %d bytes, then the body cut", resp.Status, len(got), rerr, sent)
			}
			if took := time.Since(t0); took < respIdle {
				t.Errorf("cut after %s, before response_idle_timeout %s", took, respIdle)
			}
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream request was not cancelled")
			}
			wantAudited(t, tg, "/ws-stall", http.StatusOK, codeUpstreamIdle)
		})
	}
}

// pipeArrival is a response body that says whether its rest is in memory
// (transform.Arrival) and, when it is not, waits on a pipe that never
// delivers: a stalled upstream.
type pipeArrival struct {
	io.ReadCloser
	arrived bool
}

func (b pipeArrival) Arrived() bool { return b.arrived }

// cutRecorder is a canceller that records the cause it was cancelled
// with.
type cutRecorder chan error

func (c cutRecorder) cancelCause(err error) {
	select {
	case c <- err:
	default:
	}
}

// TestWatchResponseArrival: upstream.response_idle_timeout's watch is
// skipped exactly for a body that cannot stall (none, or all of it in
// memory: transform.ArrivedWhole), and a body that may still wait for
// the upstream is watched and cut when it stalls, whatever else it is.
func TestWatchResponseArrival(t *testing.T) {
	const idle = 100 * time.Millisecond
	g := &Gateway{cfg: &Config{Upstream: Upstream{ResponseIdleTimeout: Duration(idle)}}}
	for _, tc := range []struct {
		name  string
		body  func() io.ReadCloser
		watch bool
	}{
		{"no body", func() io.ReadCloser { return nil }, false},
		{"NoBody", func() io.ReadCloser { return http.NoBody }, false},
		{"arrived", func() io.ReadCloser {
			return pipeArrival{ReadCloser: io.NopCloser(strings.NewReader("x")), arrived: true}
		}, false},
		{"not arrived", func() io.ReadCloser { r, _ := io.Pipe(); return pipeArrival{ReadCloser: r} }, true},
		{"cannot tell", func() io.ReadCloser { r, _ := io.Pipe(); return r }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body()
			resp := &http.Response{Body: body}
			var b upstreamBody
			cut := make(cutRecorder, 1)
			watched := g.watchResponse(&b, resp, cut)
			if watched != tc.watch {
				t.Fatalf("watchResponse = %v, want %v", watched, tc.watch)
			}
			if !watched {
				if resp.Body != body || b.w != nil {
					t.Errorf("an unwatched body was wrapped (%T) or took a watch", resp.Body)
				}
				return
			}
			defer b.release()
			read := make(chan struct{})
			go func() { // waits on the silent pipe until it is closed
				defer close(read)
				_, _ = resp.Body.Read(make([]byte, 1))
			}()
			select {
			case err := <-cut:
				if err != errUpstreamIdle {
					t.Errorf("cut with %v, want errUpstreamIdle", err)
				}
			case <-time.After(20 * idle):
				t.Fatalf("a stalled body was not cut within %v", 20*idle)
			}
			_ = body.Close()
			<-read // before release: the body is not read after it
		})
	}
}

// BenchmarkWatchResponse is what upstream.response_idle_timeout's watch
// costs one response (watchResponse, then release): "watched" for a body
// that may wait for the upstream, "arrived" for one whose whole body is
// in memory, which is not watched.
func BenchmarkWatchResponse(b *testing.B) {
	g := &Gateway{cfg: &Config{Upstream: Upstream{ResponseIdleTimeout: Duration(DefaultResponseIdleTimeout)}}}
	for _, arrived := range []bool{false, true} {
		name := map[bool]string{false: "watched", true: "arrived"}[arrived]
		b.Run(name, func(b *testing.B) {
			var body io.ReadCloser = pipeArrival{ReadCloser: http.NoBody, arrived: arrived}
			cut := make(cutRecorder, 1)
			var ub upstreamBody
			b.ReportAllocs()
			for b.Loop() {
				resp := http.Response{Body: body}
				if g.watchResponse(&ub, &resp, cut) {
					ub.release()
				}
			}
		})
	}
}
