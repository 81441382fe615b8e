package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func intp(n int) *int { return &n }

// TestConnectionCaps: limits.max_connections and
// max_connections_per_source as set, and their defaults from
// RLIMIT_NOFILE and the Go memory limit.
func TestConnectionCaps(t *testing.T) {
	const noMem = math.MaxInt64
	for _, tc := range []struct {
		name             string
		max, perSource   *int
		nofile           uint64
		nofileKnown      bool
		memLimit         int64
		wantMax, wantPer int
	}{
		{"from nofile 65536", nil, nil, 65536, true, noMem, (65536 - 1024) / 2, (65536 - 1024) / 8},
		{"from nofile 1024 (a quarter reserved)", nil, nil, 1024, true, noMem, (1024 - 256) / 2, (1024 - 256) / 8},
		{"from nofile, tiny: the floor", nil, nil, 16, true, noMem, 64, 16},
		{"unlimited nofile", nil, nil, math.MaxUint64, true, noMem, math.MaxInt32, math.MaxInt32 / 4},
		{"nofile unknown", nil, nil, 0, false, noMem, 10000, 2500},
		{"memory limit lower", nil, nil, 1 << 20, true, 230 << 20, (230 - 32) << 20 / (64 << 10), (230 - 32) << 20 / (64 << 10) / 4},
		{"memory limit below the base", nil, nil, 1 << 20, true, 16 << 20, 64, 16},
		{"set", intp(500), intp(7), 1 << 20, true, noMem, 500, 7},
		{"off", intp(0), nil, 1 << 20, true, noMem, 0, 0},
		{"global off, per source on", intp(0), intp(10), 1 << 20, true, noMem, 0, 10},
		{"per source off", nil, intp(0), 65536, true, noMem, (65536 - 1024) / 2, 0},
		{"set small: per source at least 1", intp(2), nil, 65536, true, noMem, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Limits{MaxConnections: tc.max, MaxConnectionsPerSource: tc.perSource}
			gotMax, gotPer := l.connectionCaps(tc.nofile, tc.nofileKnown, tc.memLimit)
			if gotMax != tc.wantMax || gotPer != tc.wantPer {
				t.Errorf("connectionCaps = %d, %d; want %d, %d", gotMax, gotPer, tc.wantMax, tc.wantPer)
			}
		})
	}
	if _, err := ParseConfig("c.yaml", []byte("policy: p.yaml\nca: {cert: c, key: k}\nlimits: {max_connections: -1}\n")); err == nil || !strings.Contains(err.Error(), "limits.max_connections must not be negative") {
		t.Errorf("max_connections -1: error %v, want one naming the key", err)
	}
	if _, err := ParseConfig("c.yaml", []byte("policy: p.yaml\nca: {cert: c, key: k}\nlimits: {max_connections_per_source: -3}\n")); err == nil || !strings.Contains(err.Error(), "limits.max_connections_per_source must not be negative") {
		t.Errorf("max_connections_per_source -3: error %v, want one naming the key", err)
	}
}

// startLimitedGateway runs startGateway's gateway with extra limits
// settings, a policy that admits every loopback address as the workload
// local, and the client TLS listener's CA trusted by tg.caPool.
func startLimitedGateway(t *testing.T, limits string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	client, err := pki.ca.ClientLeaf("client")
	if err != nil {
		t.Fatal(err)
	}
	tg.tlsCert = client
	writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(testPolicy, "127.0.0.1/32", "127.0.0.0/8", 1)))
	tg.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls:
  cert: listener.pem
  key: listener-key.pem
  client_ca: origin-ca.pem
resolve:
  "api.origin.test:443": %q
  "tunnel.origin.test:443": %q
limits:
%s`, tg.origin.addr, tg.origin.addr, limits))
	tg.caPool.AppendCertsFromPEM(tg.pki.caPEM)
	return tg
}

// openConns is the gateway's count of open client connections.
func (tg *testGateway) openConns() int64 { return tg.gw.metrics.connsOpen.Load() }

// waitConns waits until the gateway counts n open client connections.
func (tg *testGateway) waitConns(t testing.TB, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d open client connections", n), func() bool { return tg.openConns() == n })
}

// proxyURL is the URL of a proxy listener: listen or tls_listen.
func (tg *testGateway) proxyURL(listener string) *url.URL {
	if listener == "tls_listen" {
		u, _ := url.Parse("https://credgate.test:" + portOf(tg.gw.TLSProxyAddr()))
		return u
	}
	u, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	return u
}

// listenerAddr is a proxy listener's address.
func (tg *testGateway) listenerAddr(listener string) string {
	if listener == "tls_listen" {
		return tg.gw.TLSProxyAddr().String()
	}
	return tg.gw.ProxyAddr().String()
}

// clientKind is a way a client uses the gateway: its transport setting
// and the URL it asks for.
type clientKind struct {
	name string
	h2   bool
	url  string
}

var clientKinds = []clientKind{
	{"CONNECT HTTP/1.1", false, "https://" + apiHost + "/v1/limits"},
	{"CONNECT HTTP/2 in the tunnel", true, "https://" + apiHost + "/v1/limits"},
	{"plain-HTTP forward", false, "http://" + apiHost + "/v1/limits"},
}

// heldClient is one client connection to the gateway, kept open.
type heldClient struct {
	tr   *http.Transport
	resp *http.Response
}

// dialClient makes one request of kind k through listener from source
// src on a transport of one connection, which stays open (its idle
// connection) until close.
func (tg *testGateway) dialClient(t testing.TB, listener string, k clientKind, src string) (*heldClient, error) {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	addr := tg.listenerAddr(listener)
	tr := &http.Transport{
		Proxy: http.ProxyURL(tg.proxyURL(listener)),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: tg.caPool, Certificates: []tls.Certificate{tg.tlsCert}},
		ForceAttemptHTTP2: k.h2,
		MaxConnsPerHost:   1,
		IdleConnTimeout:   time.Minute,
	}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(k.url)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return &heldClient{tr: tr, resp: resp}, nil
}

func (c *heldClient) close() { c.tr.CloseIdleConnections() }

// checkRefusedAnswer dials listener from src, sends a CONNECT and checks
// the answer of a connection over limit: on listen a 503 connection_limit
// the client can read, then the connection's end; on tls_listen a
// connection closed without a handshake.
func (tg *testGateway) checkRefusedAnswer(t testing.TB, listener, src string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", tg.listenerAddr(listener))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if listener == "tls_listen" {
		tc := tls.Client(c, &tls.Config{RootCAs: tg.caPool, ServerName: "credgate.test"})
		if err := tc.Handshake(); err == nil {
			t.Errorf("tls_listen: the handshake of a connection over the limit succeeded")
		}
		return
	}
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("listen: reading the answer to a connection over the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var f refusal
	_ = json.Unmarshal(body, &f)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ReasonHeader) != codeConnectionLimit ||
		f.Code != codeConnectionLimit || f.Error != "service_unavailable" || !strings.Contains(f.Reason, "limits.max_connections") ||
		resp.Header.Get("Retry-After") != "1" || !resp.Close {
		t.Errorf("listen: answer over the limit: %s %v %s", resp.Status, resp.Header, body)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("listen: after the answer the connection gave %d bytes, %v; want its end", n, err)
	}
}

// TestConnectionLimits: on each proxy listener and for each kind of
// client, the connection over limits.max_connections or
// max_connections_per_source is refused (503 connection_limit on listen,
// a closed connection on tls_listen) and counted, a closed connection
// frees its slot, other sources are unaffected by one at its cap, and
// the count returns to zero.
func TestConnectionLimits(t *testing.T) {
	const limit = 2
	for _, lim := range []struct {
		name, settings, label string
		// otherSourceAdmitted: a second source gets in while the first
		// holds the cap.
		otherSourceAdmitted bool
	}{
		{"global", fmt.Sprintf("  max_connections: %d\n  max_connections_per_source: 0\n", limit), limitGlobal, false},
		{"per source", fmt.Sprintf("  max_connections: 100\n  max_connections_per_source: %d\n", limit), limitPerSource, true},
	} {
		t.Run(lim.name, func(t *testing.T) {
			tg := startLimitedGateway(t, lim.settings)
			if !strings.Contains(tg.logs.String(), `"msg":"client connection limits"`) {
				t.Errorf("no log line says the connection limits in force:\n%s", tg.logs.String())
			}
			for _, listener := range []string{"listen", "tls_listen"} {
				for _, k := range clientKinds {
					t.Run(listener+"/"+k.name, func(t *testing.T) {
						refused := tg.gw.metrics.connsRefused.WithLabelValues(listener, lim.label)
						before := counterValue(t, refused)
						var held []*heldClient
						for i := range limit {
							c, err := tg.dialClient(t, listener, k, "127.0.0.1")
							if err != nil {
								t.Fatalf("client %d of %d: %v", i+1, limit, err)
							}
							held = append(held, c)
						}
						tg.waitConns(t, limit)

						// The connection over the limit, as this kind of client sees it.
						c, err := tg.dialClient(t, listener, k, "127.0.0.1")
						switch {
						case listener == "listen" && k.url[:5] == "http:":
							if err != nil || c.resp.StatusCode != http.StatusServiceUnavailable || c.resp.Header.Get(ReasonHeader) != codeConnectionLimit {
								t.Errorf("forward over the limit: %v %+v, want 503 %s", err, c, codeConnectionLimit)
							}
						case err == nil:
							t.Errorf("client over the limit: request succeeded, want its connection refused")
						}
						// And on the wire.
						tg.checkRefusedAnswer(t, listener, "127.0.0.1")
						if got := counterValue(t, refused) - before; got != 2 {
							t.Errorf("credgate_connections_refused_total{listener=%q,limit=%q} rose by %v, want 2", listener, lim.label, got)
						}

						// Another source.
						other, err := tg.dialClient(t, listener, k, "127.0.0.2")
						if lim.otherSourceAdmitted {
							if err != nil {
								t.Errorf("another source, while 127.0.0.1 holds its cap: %v", err)
							} else {
								other.close()
							}
						} else if err == nil && other.resp.StatusCode != http.StatusServiceUnavailable {
							t.Errorf("another source over the global limit: admitted (%s)", other.resp.Status)
						}
						tg.waitConns(t, limit)

						// A closed connection frees its slot.
						held[0].close()
						tg.waitConns(t, limit-1)
						c, err = tg.dialClient(t, listener, k, "127.0.0.1")
						if err != nil {
							t.Fatalf("after a connection closed: %v", err)
						}
						held[0] = c
						for _, c := range held {
							c.close()
						}
						tg.waitConns(t, 0)
						if n := tg.gw.connAdmit.sources(); n != 0 {
							t.Errorf("%d sources still counted with no connection open", n)
						}
					})
				}
			}
		})
	}
}

// TestConnectionSlotsFreed: a connection's slot is freed however it ends
// without a client closing it cleanly: the idle timeout, a client that
// vanishes in the middle of the TLS handshake or of a request, a handshake
// that times out (the proxy listener's or a tunnel's, before or after the
// first bytes of the ClientHello: the gateway closes it after
// read_header_timeout). And 10,000 connections opened and closed, some over the
// limits, leave the count at zero, never below.
func TestConnectionSlotsFreed(t *testing.T) {
	tg := startLimitedGateway(t, "  max_connections: 64\n  max_connections_per_source: 32\n  idle_timeout: 300ms\n  read_header_timeout: 300ms\n")
	dial := func(listener string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", tg.listenerAddr(listener))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		// open opens a connection and leaves it in the state to test;
		// the returned func, when not nil, is the client vanishing.
		open func(t *testing.T) (vanish func())
	}{
		{"idle timeout after a request", func(t *testing.T) func() {
			c, err := tg.dialClient(t, "listen", clientKinds[0], "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			_ = c
			return nil
		}},
		{"idle timeout, plain forward", func(t *testing.T) func() {
			if _, err := tg.dialClient(t, "listen", clientKinds[2], "127.0.0.1"); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"tls_listen: no handshake (read_header_timeout)", func(t *testing.T) func() {
			c := dial("tls_listen")
			t.Cleanup(func() { c.Close() })
			return nil
		}},
		{"tls_listen: client vanishes mid-handshake", func(t *testing.T) func() {
			c := dial("tls_listen")
			// The first bytes of a ClientHello record.
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
			return func() { c.Close() }
		}},
		{"tls_listen: handshake stalls after part of its ClientHello (read_header_timeout)", func(t *testing.T) func() {
			c := dial("tls_listen")
			t.Cleanup(func() { c.Close() })
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
			return nil
		}},
		{"listen: a tunnel's handshake that never starts (read_header_timeout)", func(t *testing.T) func() {
			c := dial("listen")
			t.Cleanup(func() { c.Close() })
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			return nil
		}},
		{"listen: a tunnel's handshake that stalls after part of its ClientHello (read_header_timeout)", func(t *testing.T) func() {
			c := dial("listen")
			t.Cleanup(func() { c.Close() })
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
			return nil
		}},
		{"listen: client vanishes mid-request", func(t *testing.T) func() {
			c := dial("listen")
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: ", apiHost)
			return func() { c.Close() }
		}},
		{"listen: client vanishes inside a tunnel's handshake", func(t *testing.T) func() {
			c := dial("listen")
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
			return func() { c.Close() }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vanish := tc.open(t)
			tg.waitConns(t, 1)
			if vanish != nil {
				vanish()
			}
			tg.waitConns(t, 0)
		})
	}

	t.Run("10k open and close", func(t *testing.T) {
		const total, workers = 10000, 8
		deadline := time.Now().Add(2 * time.Minute)
		var next, minSeen atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() { // never below zero, sampled throughout
			defer close(sampled)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if n := tg.openConns(); n < minSeen.Load() {
					minSeen.Store(n)
				}
			}
		}()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := []string{"127.0.0.1", "127.0.0.3"}[w%2]
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				for i := next.Add(1); i <= total && time.Now().Before(deadline); i = next.Add(1) {
					listener := []string{"listen", "tls_listen"}[i%2]
					c, err := d.Dial("tcp", tg.listenerAddr(listener))
					if err != nil {
						continue // the backlog, briefly full: not what is tested
					}
					if i%3 == 0 {
						_, _ = c.Write([]byte("GET / HTTP/1.1\r\n"))
					}
					c.Close()
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-sampled
		if time.Now().After(deadline) {
			t.Fatalf("10,000 connections not done within 2 minutes (%d)", next.Load())
		}
		tg.waitConns(t, 0)
		if m := minSeen.Load(); m < 0 {
			t.Errorf("the count of open connections went down to %d", m)
		}
		if n := tg.gw.connAdmit.sources(); n != 0 {
			t.Errorf("%d sources still counted with no connection open", n)
		}
	})
}

// failingListener returns the errors of errs from Accept, one per call,
// before it accepts from the listener it wraps, and counts the calls.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	errs  []error
	calls []time.Time
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// acceptError is the error a TCP listener's Accept returns for errno.
func acceptError(errno error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// acceptErrnos are the errors accept(2) returns on a listening socket
// that is still open: out of descriptors or memory, and the network
// errors of a pending connection it passes on (accept(2): "treat them
// like EAGAIN by retrying").
var acceptErrnos = []struct {
	name  string
	errno syscall.Errno
}{
	{"EMFILE", syscall.EMFILE},
	{"ENFILE", syscall.ENFILE},
	{"ECONNABORTED", syscall.ECONNABORTED},
	{"ENOBUFS", syscall.ENOBUFS},
	{"ENOMEM", syscall.ENOMEM},
	{"EPROTO", syscall.EPROTO},
	{"EPERM", syscall.EPERM},
	{"ENETDOWN", syscall.ENETDOWN},
	{"EHOSTUNREACH", syscall.EHOSTUNREACH},
}

// TestAcceptErrorsBackOff: every error of Accept but a closed listener's
// (out of file descriptors, and those accept(2) calls transient) is
// waited out with a growing backoff and retried, counted and logged
// once; the listener then serves the next client.
func TestAcceptErrorsBackOff(t *testing.T) {
	tg := startLimitedGateway(t, "  max_connections: 100\n")
	start := time.Now()
	for _, tc := range acceptErrnos {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			const fails = 6
			fl := &failingListener{Listener: raw}
			for range fails {
				fl.errs = append(fl.errs, acceptError(tc.errno))
			}
			ln := &admitListener{Listener: fl, adm: tg.gw.connAdmit, refused: func(c net.Conn, _ string, _ netip.Addr) { c.Close() }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			var loopErr error
			before := counterValue(t, tg.gw.metrics.acceptErrors.WithLabelValues("test"))
			go func() {
				defer close(done)
				loopErr = tg.gw.serveClients(ctx, "test", ln, nil)
			}()
			defer func() {
				cancel()
				raw.Close()
				<-done
			}()

			// The next client is served.
			pu, _ := url.Parse("http://" + raw.Addr().String())
			tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: tg.caPool}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + apiHost + "/v1/after-accept-errors")
			if err != nil {
				select {
				case <-done:
					t.Fatalf("the accept loop stopped on %v: %v", tc.errno, loopErr)
				default:
				}
				t.Fatalf("after %d accept errors: %v", fails, err)
			}
			resp.Body.Close()
			fl.mu.Lock()
			calls := fl.calls
			fl.mu.Unlock()
			// Backed off, not spun: the waits between the failed calls
			// grew (5 ms doubling, with jitter down to half).
			if len(calls) < fails+1 {
				t.Fatalf("%d Accept calls, want at least %d", len(calls), fails+1)
			}
			if waited := calls[fails].Sub(calls[0]); waited < (5+10+20+40+80+160)*time.Millisecond/2 {
				t.Errorf("%d failed accepts retried within %v: no backoff", fails, waited)
			}
			if got := counterValue(t, tg.gw.metrics.acceptErrors.WithLabelValues("test")) - before; got != fails {
				t.Errorf("credgate_accept_errors_total rose by %v, want %d", got, fails)
			}
		})
	}
	if n, most := strings.Count(tg.logs.String(), "accepting a client connection failed"), 1+int(time.Since(start)/clientLogEvery); n < 1 || n > most {
		t.Errorf("%d log lines for the accept errors, want 1 to %d (one per %v)", n, most, clientLogEvery)
	}
}

// TestAdminConnectionLimit: admin_listen, plain and over TLS, admits
// admin.max_connections connections and refuses the rest when accepted
// (503 connection_limit on plain HTTP, a closed connection with TLS),
// counted in credgate_connections_refused_total{listener="admin"}; a
// probe refused during the flood answers once the server's
// read_header_timeout has freed the flood's slots, without the flood's
// clients closing anything; and a scrape from a fresh connection shows
// the refusals.
func TestAdminConnectionLimit(t *testing.T) {
	const limit, over = 4, 3
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			admin := fmt.Sprintf("admin:\n  max_connections: %d\n  read_header_timeout: 500ms\n", limit)
			client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
			scheme := "http"
			if tc.tls {
				ca := adminPKI(t, dir, "admin CA")
				admin += fmt.Sprintf("  tls: {cert: %q, key: %q}\n", filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem"))
				client = httpsClient(t, ca.Pool())
				client.Transport.(*http.Transport).DisableKeepAlives = true
				scheme = "https"
			}
			tg := startSwitchGateway(t, admin)
			base := scheme + "://" + tg.gw.AdminAddr().String()
			refused := tg.gw.metrics.connsRefused.WithLabelValues("admin", limitGlobal)

			// The flood: limit+over connections that send nothing.
			var flood []net.Conn
			t.Cleanup(func() {
				for _, c := range flood {
					c.Close()
				}
			})
			for range limit + over {
				c, err := net.Dial("tcp", tg.gw.AdminAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				flood = append(flood, c)
			}
			waitFor(t, 5*time.Second, fmt.Sprintf("%d admin connections refused", over), func() bool { return counterValue(t, refused) == over })
			if n := tg.gw.adminOpen.Load(); n != limit {
				t.Errorf("%d admin connections open, want %d", n, limit)
			}

			// A probe during the flood is refused, and says why when it can.
			st, body, err := adminDo(client, http.MethodGet, base+"/healthz", "", "")
			switch {
			case tc.tls && err == nil:
				t.Errorf("probe over TLS during the flood: %d, want its connection closed", st)
			case !tc.tls && (err != nil || st != http.StatusServiceUnavailable || !strings.Contains(body, codeConnectionLimit) || !strings.Contains(body, "admin.max_connections")):
				t.Errorf("probe during the flood: %d %v %s, want 503 %s naming admin.max_connections", st, err, body, codeConnectionLimit)
			}

			// The server cuts the silent flood at read_header_timeout:
			// the probes answer again.
			waitFor(t, 10*time.Second, "a probe answered after the flood's slots were freed", func() bool {
				st, _, err := adminDo(client, http.MethodGet, base+"/healthz", "", "")
				return err == nil && st == http.StatusOK
			})
			// Every probe refused while waiting counted too.
			n := counterValue(t, refused)
			if n < over+1 {
				t.Errorf("%v admin connections refused, want at least %d", n, over+1)
			}
			st, body, err = adminDo(client, http.MethodGet, base+"/metrics", "", "")
			if want := fmt.Sprintf(`credgate_connections_refused_total{limit="global",listener="admin"} %v`, n); err != nil || st != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("scrape after the flood: %d %v; want %s in:\n%.2000s", st, err, want, body)
			}
			for _, c := range flood {
				c.Close()
			}
			waitFor(t, 5*time.Second, "no admin connection open", func() bool { return tg.gw.adminOpen.Load() == 0 })
		})
	}
}
