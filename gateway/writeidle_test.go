package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/credgate/credgate/internal/poll"
)

// writeIdle is the tests' limits.write_idle_timeout.
const writeIdle = 300 * time.Millisecond

// endlessOrigin answers every request under /stall/ with a body it
// writes until the upstream request ends, and records that end per path.
type endlessOrigin struct {
	mu    sync.Mutex
	ended map[string]chan struct{}
}

func (o *endlessOrigin) done(path string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended == nil {
		o.ended = map[string]chan struct{}{}
	}
	ch := o.ended[path]
	if ch == nil {
		ch = make(chan struct{})
		o.ended[path] = ch
	}
	return ch
}

func (o *endlessOrigin) serve(w http.ResponseWriter, r *http.Request) {
	defer close(o.done(r.URL.Path))
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 32<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// stallGateway runs a gateway with a TLS listener in front of an origin
// (and a plain one) answering /stall/NAME without end, with limits as
// its limits map's content; it returns the gateway, the origin and the clients that
// send a request to /stall/NAME and then take nothing more of the
// answer, one per listener and protocol.
func stallGateway(t *testing.T, limits string) (*testGateway, *endlessOrigin, []stallClient) {
	t.Helper()
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	client, err := pki.ca.ClientLeaf("client")
	if err != nil {
		t.Fatal(err)
	}
	o := &endlessOrigin{}
	for _, name := range []string{"listen-h1", "tls_listen-h1", "h2-zero-window", "h2-unread"} {
		tg.origin.route("/stall/"+name, o.serve)
	}
	plain := httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(plain.Close)
	writeFile(t, tg.dir, "policy.yaml", []byte(bodyPolicy))
	tg.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {cert: listener.pem, key: listener-key.pem, client_ca: origin-ca.pem}
resolve: {"api.origin.test:443": %q, "plain.origin.test:80": %q}
limits: {%s}
`, tg.origin.addr, plain.Listener.Addr(), limits))
	// Each case sends its request (to /stall/NAME) and then takes
	// nothing more of the answer; it returns what to close at the end.
	cases := []stallClient{
		{"plain", func(t *testing.T, path string) io.Closer {
			c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET http://plain.origin.test%s HTTP/1.1\r\nHost: plain.origin.test\r\n\r\n", path)
			return c
		}},
		{"listen-h1", func(t *testing.T, path string) io.Closer {
			tc, _ := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
			return tc
		}},
		{"tls_listen-h1", func(t *testing.T, path string) io.Closer {
			roots := tg.caPool.Clone()
			roots.AppendCertsFromPEM(pki.caPEM)
			c, err := tls.Dial("tcp", tg.gw.TLSProxyAddr().String(), &tls.Config{ServerName: "credgate.test", RootCAs: roots, Certificates: []tls.Certificate{client}})
			if err != nil {
				t.Fatal(err)
			}
			tc, _ := h1TunnelOver(t, tg, c, apiHost)
			fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
			return tc
		}},
		{"h2-zero-window", func(t *testing.T, path string) io.Closer {
			h := h2RawTunnel(t, tg, apiHost)
			// No window for any stream; the connection is read (and
			// its PINGs and SETTINGS answered) all along.
			if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
				t.Fatal(err)
			}
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, true)
			go func() {
				for {
					f, err := h.fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							_ = h.fr.WriteSettingsAck()
						}
					case *http2.PingFrame:
						if !f.IsAck() {
							_ = h.fr.WritePing(true, f.Data)
						}
					}
				}
			}()
			return closerFunc(func() error { return h.fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
		}},
		{"h2-unread", func(t *testing.T, path string) io.Closer {
			h := h2RawTunnel(t, tg, apiHost)
			// Windows wide open: the gateway writes until the
			// connection itself is full, and the client reads nothing.
			if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
				t.Fatal(err)
			}
			if err := h.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
				t.Fatal(err)
			}
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, true)
			return closerFunc(func() error { return nil })
		}},
	}
	return tg, o, cases
}

// stallClient sends a request to path and then takes nothing more of
// the answer; it returns what to close at the end.
type stallClient struct {
	name string
	send func(t *testing.T, path string) io.Closer
}

// TestWriteIdleTimeout is the class "a client that stops taking the
// response": on every listener and protocol a client reaches the gateway
// by (a plain absolute-URI request on the proxy listener, HTTP/1.1 in a
// tunnel opened on listen and on tls_listen, HTTP/2 in a tunnel with a
// stream that is granted no flow-control window, and HTTP/2 with windows
// open whose connection the client stops reading), a response whose
// client takes nothing more is cut after limits.write_idle_timeout: the
// upstream request ends, the audit line says client_stalled, and the
// gateway's goroutines return to what they were. Before, each held the
// handler, its upstream request and connection until the client went.
func TestWriteIdleTimeout(t *testing.T) {
	tg, o, cases := stallGateway(t, "write_idle_timeout: "+writeIdle.String())
	// What the gateway runs with no client: measured after a request on
	// each protocol, so that what starts at the first one is counted,
	// and with no connection left open or pooled.
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		resp, err := c.Get("https://" + apiHost + "/warm")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.CloseIdleConnections()
	}
	settled := func(n int) bool {
		// Pooled upstream connections are not the client's doing.
		tg.gw.pools.Load().closeIdle()
		return runtime.NumGoroutine() <= n
	}
	waitFor(t, 10*time.Second, "the warm-up's connections closed", func() bool {
		return settled(20)
	})
	base := runtime.NumGoroutine()

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/stall/" + tc.name
			ended := o.done(path)
			c := tc.send(t, path)
			defer c.Close()
			select {
			case <-ended:
			case <-time.After(15 * time.Second):
				t.Fatalf("the upstream request still runs 15s after the client stopped reading (limits.write_idle_timeout %s)", writeIdle)
			}
			wantAudited(t, tg, path, http.StatusOK, codeClientStalled)
		})
	}
	// A client that reads slowly but keeps reading, pausing less than
	// the limit, is never cut, over either protocol.
	const steady = 256 << 10
	tg.origin.route("/steady", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(steady))
		_, _ = w.Write(make([]byte, steady))
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("steady reader/h2=%v", h2), func(t *testing.T) {
			resp, err := tg.client(t, h2).Get("https://" + apiHost + "/steady")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 16<<10)
			var n int
			for {
				m, err := io.ReadFull(resp.Body, buf)
				n += m
				if err != nil {
					break
				}
				<-time.After(writeIdle * 2 / 3) // the client's pace
			}
			if n != steady {
				t.Fatalf("read %d of %d bytes", n, steady)
			}
		})
	}

	ok := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !ok; {
		if ok = settled(base); !ok {
			runtime.Gosched()
		}
	}
	if !ok {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d, base %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// TestShutdownWithHostileClients: shutdown ends within shutdown_timeout
// (5s in the tests) whatever the clients hold open: a response each of
// the stalled readers of TestWriteIdleTimeout takes nothing of (the
// write limit far away), a TLS handshake on tls_listen and one inside a
// tunnel that never finish, a CONNECT whose header never ends, an idle
// kept-alive connection (TestLongLivedShutdown has the tunnels and
// WebSockets); and every upstream request has ended when Run returns.
func TestShutdownWithHostileClients(t *testing.T) {
	tg, o, cases := stallGateway(t, "write_idle_timeout: 10m, read_header_timeout: 10m, idle_timeout: 10m")
	var ended []chan struct{}
	for _, c := range cases {
		path := "/stall/" + c.name
		ended = append(ended, o.done(path))
		defer c.send(t, path).Close()
	}
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// A TLS handshake on tls_listen that never gets past the TCP one.
	dial(tg.gw.TLSProxyAddr().String())
	// A CONNECT whose header never ends.
	fmt.Fprintf(dial(tg.gw.ProxyAddr().String()), "CONNECT %s:443 HTTP/1.1\r\nHost: ", apiHost)
	// A tunnel whose ClientHello never comes.
	c := dial(tg.gw.ProxyAddr().String())
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	// An idle kept-alive connection in a tunnel.
	tc, br := h1Tunnel(t, tg)
	fmt.Fprintf(tc, "GET /ok HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	readResp(t, br, http.MethodGet)
	for _, ch := range ended[:1] {
		// The upstream requests are under way (the first case's, at
		// least: the others were sent before it returned).
		select {
		case <-ch:
			t.Fatal("an upstream request ended before the shutdown")
		default:
		}
	}
	t0 := time.Now()
	if err := tg.stop(); err != nil {
		t.Fatal(err)
	}
	// A bound, not a timing: shutdown_timeout is 5s, and a shutdown the
	// hostile clients held open would never end. The margin is for a
	// loaded machine running -race, where the 8s and 5s bounds this test
	// had failed once.
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("shutdown took %s with hostile clients open; shutdown_timeout is 5s", d)
	}
	for i, ch := range ended {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Errorf("the upstream request of %s still runs after shutdown", cases[i].name)
		}
	}
}

// TestShutdownWithStuckAuditOutput: an audit output that takes no write
// (a stdout pipe no one reads) does not keep Run from returning. The lines
// still buffered are given up after outputCloseGrace, the log says so
// with how many and where, and Run returns errOutputStuck (credgate serve
// exits non-zero). Before, the audit writer's Close waited for the output
// for ever.
func TestShutdownWithStuckAuditOutput(t *testing.T) {
	tg := startGateway(t)
	get := func(path string) {
		t.Helper()
		resp, err := tg.client(t, false).Get("https://" + apiHost + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("/v1/before-the-stall")
	poll.True(t, 10*time.Second, "the first line written", func() bool { return strings.Contains(tg.audit.String(), "before-the-stall") })
	// The output takes nothing from now on (its Write waits for the
	// lock); released before tg.run's cleanup reads it.
	release := sync.OnceFunc(tg.audit.Hold())
	t.Cleanup(release)
	get("/v1/during-the-stall") // its line is buffered, never written
	stopped := make(chan error, 1)
	t0 := time.Now()
	go func() { stopped <- tg.stop() }()
	select {
	case err := <-stopped:
		if d := time.Since(t0); d < outputCloseGrace {
			t.Errorf("Run returned after %s, before the output's grace of %s", d, outputCloseGrace)
		}
		if !errors.Is(err, errOutputStuck) || !strings.Contains(err.Error(), "1 lines not written to "+auditOutputGiven) {
			t.Errorf("Run: %v, want errOutputStuck naming 1 line not written to %s", err, auditOutputGiven)
		}
		tg.stop = func() error { return nil } // the error is this test's
	case <-time.After(outputCloseGrace + 20*time.Second):
		release()
		t.Fatalf("Run did not return %s after shutdown began with the audit output stuck", time.Since(t0))
	}
	release()
	logs := tg.logs.String()
	if !strings.Contains(logs, "audit output took no write at shutdown") ||
		!strings.Contains(logs, `"lines_not_written":1`) || !strings.Contains(logs, `"output":"`+auditOutputGiven+`"`) {
		t.Errorf("the log does not say the buffered lines were given up, how many and where:\n%s", logs)
	}
}
