package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	_ "github.com/credgate/credgate/injectors/all"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
	"github.com/credgate/credgate/internal/tracing"
	_ "github.com/credgate/credgate/providers/all"

	"github.com/credgate/credgate/internal/syncbuf"
)

// Names the test origin answers to; the gateway's resolve map pins them.
const (
	apiHost    = "api.origin.test"
	tunnelHost = "tunnel.origin.test"
)

// testPKI is an origin CA and a server leaf for the origin names (and
// 127.0.0.1).
type testPKI struct {
	ca    *testpki.Authority
	caPEM []byte
	pool  *x509.CertPool
	leaf  tls.Certificate
}

func newTestPKI(t testing.TB, names ...string) *testPKI {
	t.Helper()
	ca, err := testpki.NewAuthority("test origin CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(append(names, "127.0.0.1")...)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, caPEM: ca.CertPEM, pool: ca.Pool(), leaf: leaf}
}

// writeFile writes data into dir/name (0600) and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// seen is what the origin received.
type seen struct {
	Method string
	Proto  string
	Host   string
	SNI    string
	Path   string
	// URI is the request target as it arrived (the path's wire form).
	URI     string
	Query   string
	Header  http.Header
	Trailer http.Header
}

type testOrigin struct {
	addr string
	mu   sync.Mutex
	reqs []seen
	// accept is the one bearer token /auth/ paths accept (401 otherwise).
	accept string
	// bodyErrs counts /echo requests whose body broke off.
	bodyErrs int
	// routes are a test's own paths (set with route), tried before the
	// default answer.
	routes map[string]http.HandlerFunc
}

// route serves path with h on the origin.
func (o *testOrigin) route(path string, h http.HandlerFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.routes == nil {
		o.routes = map[string]http.HandlerFunc{}
	}
	o.routes[path] = h
}

func (o *testOrigin) all() []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seen(nil), o.reqs...)
}

// startOrigin serves TLS with HTTP/2 on 127.0.0.1. Routes: /stream sends
// two chunks, the second after the client acknowledged the first through
// /stream-ack; /ws upgrades to an echo protocol; anything else echoes.
func startOrigin(t testing.TB, pki *testPKI) *testOrigin {
	t.Helper()
	o := &testOrigin{}
	ack := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, Trailer: r.Trailer, Proto: r.Proto, Host: r.Host, Path: r.URL.Path, URI: r.RequestURI, Query: r.URL.RawQuery, Header: r.Header.Clone()}
		if r.TLS != nil {
			s.SNI = r.TLS.ServerName
		}
		o.mu.Lock()
		o.reqs = append(o.reqs, s)
		o.mu.Unlock()
		o.mu.Lock()
		accept := o.accept
		o.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/auth/") && r.Header.Get("Authorization") != "Bearer "+accept {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "token rejected", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-ack:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
			}
			fmt.Fprint(w, "second\n")
		case "/stream-ack":
			ack <- struct{}{}
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", http.StatusBadRequest)
				return
			}
			wsEcho(w, r)
		case "/upgrade-any", "/ws-wrong":
			// Switches to whatever the client asks for (an origin that
			// would accept h2c), or, for /ws-wrong, to h2c whatever it
			// asked for.
			up := r.Header.Get("Upgrade")
			if up == "" {
				fmt.Fprint(w, "no upgrade")
				return
			}
			if r.URL.Path == "/ws-wrong" {
				up = "h2c"
			}
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\nunchecked bytes", up, wsAccept(r.Header.Get("Sec-Websocket-Key")))
			rw.Flush()
			_, _ = io.Copy(io.Discard, rw)
		case "/echo":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				o.mu.Lock()
				o.bodyErrs++
				o.mu.Unlock()
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "len=%d", n)
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			fmt.Fprint(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/truncate":
			// The body breaks off after a first part.
			fmt.Fprint(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/early":
			// Answers without reading the request body.
			w.Header().Set("Connection", "close")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		default:
			o.mu.Lock()
			route := o.routes[r.URL.Path]
			o.mu.Unlock()
			if route != nil {
				route(w, r)
				return
			}
			fmt.Fprintf(w, "ok %s", r.URL.Path)
		}
	})
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	// Both protocols, as real servers offer them (httptest alone would
	// offer h2 only, and still serve HTTP/1.1 without ALPN).
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: []string{"h2", "http/1.1"}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.addr = srv.Listener.Addr().String()
	return o
}

const testPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
  missing:
    provider: static
    env: CREDGATE_GATEWAY_TEST_UNSET
  reissuable:
    provider: gwtest-reissuable
    env: CREDGATE_GATEWAY_TEST_REISSUABLE
  pinned:
    provider: gwtest-pinned
    env: CREDGATE_GATEWAY_TEST_REISSUABLE
    host_env: CREDGATE_GATEWAY_TEST_PINNED_HOST
rules:
  - name: pinned
    from: local
    to: api
    paths: [/auth/pinned/*]
    inject: {credential: pinned, as: bearer}
  - name: auth
    from: local
    to: api
    paths: [/auth/*]
    inject: {credential: reissuable, as: bearer}
  - name: unavailable
    from: local
    to: api
    paths: [/unavailable*]
    inject: {credential: missing, as: bearer}
  - name: api
    from: local
    to: api
    inject: {credential: token, as: bearer}
  - name: tunnel
    from: local
    to: tunnel
    action: tunnel
default: deny
`

type testGateway struct {
	gw      *Gateway
	origin  *testOrigin
	pki     *testPKI
	caPool  *x509.CertPool
	token   string
	audit   *lockedBuffer
	logs    *lockedBuffer
	dir     string
	tlsCert tls.Certificate // a client certificate the TLS listener trusts
	// stop shuts the gateway down and returns Run's error (once; later
	// calls return the same).
	stop func() error
	// upstreamExtra is appended inside the config's upstream map
	// (", http2: never").
	upstreamExtra string
	// tracer, when set before run, records the gateway's spans.
	tracer *tracing.Tracer
	// caPermit, when set before run, limits the interception CA
	// (credgate ca init --permit).
	caPermit []string
}

// lockedBuffer captures output goroutines write while the test reads.
type lockedBuffer = syncbuf.Buffer

// startGateway runs a gateway in-process with a plain and a TLS listener.
func startGateway(t testing.TB) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	client, err := pki.ca.ClientLeaf("client")
	if err != nil {
		t.Fatal(err)
	}
	tg.tlsCert = client
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls:
  cert: listener.pem
  key: listener-key.pem
  client_ca: origin-ca.pem
  reload_interval: 50ms
resolve:
  "api.origin.test:443": %q
  "tunnel.origin.test:443": %q
`, tg.origin.addr, tg.origin.addr))
	return tg
}

// newTestGateway prepares a gateway's directory: interception CA, origin
// CA, the TLS listener's certificate (the origin leaf) and the credential
// the static provider serves.
func newTestGateway(t testing.TB, pki *testPKI, o *testOrigin) *testGateway {
	t.Helper()
	tg := &testGateway{origin: o, pki: pki, token: "gw-test-secret-" + fmt.Sprint(time.Now().UnixNano()),
		audit: &lockedBuffer{}, logs: &lockedBuffer{}, dir: t.TempDir()}
	t.Setenv("CREDGATE_GATEWAY_TEST_TOKEN", tg.token)
	writeFile(t, tg.dir, "origin-ca.pem", pki.caPEM)
	certPEM, keyPEM, err := testpki.PEM(pki.leaf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, tg.dir, "listener.pem", certPEM)
	writeFile(t, tg.dir, "listener-key.pem", keyPEM)
	return tg
}

// run writes the gateway config (the common settings plus extra) and
// runs the gateway until the test ends; cleanup checks that the
// credential never reached the logs or the audit output.
func (tg *testGateway) run(t testing.TB, extra string) {
	t.Helper()
	caCert, caKey, err := mitm.WriteCAWith(tg.dir, mitm.CAOptions{Permit: tg.caPermit})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeFile(t, tg.dir, "credgate.yaml", []byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
policy: policy.yaml
ca: {cert: %q, key: %q, reload_interval: 50ms}
upstream: {ca_bundle: origin-ca.pem%s}
shutdown_timeout: 5s
`, caCert, caKey, tg.upstreamExtra)+extra))
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(tg.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := New(ctx, cfg, Options{Logger: logger, Audit: tg.audit, Tracer: tg.tracer})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tg.gw = gw
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	<-gw.Ready()
	tg.stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := tg.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
			if strings.Contains(s, tg.token) {
				t.Errorf("the credential appears in the %s output", where)
			}
		}
	})
	tg.caPool = x509.NewCertPool()
	tg.caPool.AppendCertsFromPEM(mustRead(t, caCert))
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// client returns an HTTP client using the gateway as its proxy.
func (tg *testGateway) client(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		TLSClientConfig:   &tls.Config{RootCAs: tg.caPool},
		ForceAttemptHTTP2: h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHTTP2BothWays(t *testing.T) {
	tg := startGateway(t)
	resp, err := tg.client(t, true).Get("https://" + apiHost + "/v1/h2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("client saw %s over %s (%q), want 200 over HTTP/2", resp.Status, resp.Proto, body)
	}
	got := tg.origin.all()
	if len(got) != 1 || got[0].Proto != "HTTP/2.0" || got[0].Header.Get("Authorization") != "Bearer "+tg.token || got[0].SNI != apiHost {
		t.Fatalf("origin saw %+v, want one HTTP/2 request with the credential and SNI %s", got, apiHost)
	}
}

// TestUpstreamHTTP2Setting: upstream.http2 match (the default) speaks the
// client's protocol to an origin that offers both; always and never force
// it.
func TestUpstreamHTTP2Setting(t *testing.T) {
	for _, tc := range []struct {
		setting  string
		clientH2 bool
		want     string
	}{
		{"", false, "HTTP/1.1"},
		{"", true, "HTTP/2.0"},
		{"always", false, "HTTP/2.0"},
		{"never", true, "HTTP/1.1"},
	} {
		t.Run(fmt.Sprintf("%s/client-h2=%v", tc.setting, tc.clientH2), func(t *testing.T) {
			pki := newTestPKI(t, apiHost)
			tg := newTestGateway(t, pki, startOrigin(t, pki))
			if tc.setting != "" {
				tg.upstreamExtra = ", http2: " + tc.setting
			}
			writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
			tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
			resp, err := tg.client(t, tc.clientH2).Get("https://" + apiHost + "/v1/proto")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := tg.origin.all()
			if resp.StatusCode != 200 || len(got) != 1 || got[0].Proto != tc.want {
				t.Fatalf("status %d, origin saw %+v; want one %s request", resp.StatusCode, got, tc.want)
			}
		})
	}
	if _, err := ParseConfig("c.yaml", []byte("policy: p.yaml\nca: {cert: c, key: k}\nupstream:\n  http2: sometimes\n")); err == nil || !strings.Contains(err.Error(), `c.yaml:4:3: upstream.http2: unknown value "sometimes"`) {
		t.Errorf("bad upstream.http2: %v", err)
	}
}

func TestStreamingResponse(t *testing.T) {
	tg := startGateway(t)
	c := tg.client(t, false)
	resp, err := c.Get("https://" + apiHost + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The first chunk must arrive while the origin still holds the
	// response open: the gateway streams, it does not buffer.
	first, err := br.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	ack, err := c.Get("https://" + apiHost + "/stream-ack")
	if err != nil {
		t.Fatal(err)
	}
	ack.Body.Close()
	second, err := br.ReadString('\n')
	if err != nil || second != "second\n" {
		t.Fatalf("second chunk %q, %v", second, err)
	}
}

func TestWebSocketUpgradeIntercepted(t *testing.T) {
	tg := startGateway(t)
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
	tbr := bufio.NewReader(tc)
	resp, err = http.ReadResponse(tbr, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(tc, "hello\n")
	line, err := readEcho(tbr)
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("after the upgrade read %q, %v", line, err)
	}
	if got := tg.origin.all(); len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+tg.token {
		t.Errorf("the upgrade request did not carry the injected credential")
	}
}

// An unset static variable: 502 credential_not_configured without
// Retry-After (retrying cannot help), nothing forwarded.
func TestFailClosedWhenCredentialNotConfigured(t *testing.T) {
	tg := startGateway(t)
	resp, err := tg.client(t, false).Get("https://" + apiHost + "/unavailable")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ReasonHeader) != codeCredentialNotConfigured || resp.Header.Get("Retry-After") != "" {
		t.Errorf("got %s %s Retry-After %q, want 502 %s without Retry-After", resp.Status, resp.Header.Get(ReasonHeader), resp.Header.Get("Retry-After"), codeCredentialNotConfigured)
	}
	if strings.Contains(string(body), "CREDGATE_GATEWAY_TEST_UNSET") {
		t.Errorf("the client was told an internal detail: %s", body)
	}
	if got := tg.origin.all(); len(got) != 0 {
		t.Errorf("origin saw %d requests; a request without its credential must not be forwarded", len(got))
	}
}

// TestRetryAfterIsTheBackoffInForce: a credential whose source is down
// is answered 503 with Retry-After equal to the cache's error backoff
// still in force (5 s by default), not a fixed 1 s that would only meet
// the same error.
func TestRetryAfterIsTheBackoffInForce(t *testing.T) {
	t.Setenv("CREDGATE_GATEWAY_TEST_REISSUABLE", "")
	tg := startGateway(t)
	resp, err := tg.client(t, false).Get("https://" + apiHost + "/auth/down")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ReasonHeader) != codeCredentialUnavail {
		t.Fatalf("got %s %s, want 503 %s", resp.Status, resp.Header.Get(ReasonHeader), codeCredentialUnavail)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 4 || ra > 5 {
		t.Errorf("Retry-After %q, want the 5 s error backoff in force", resp.Header.Get("Retry-After"))
	}
	if got := tg.origin.all(); len(got) != 0 {
		t.Errorf("origin saw %d requests; a request without its credential must not be forwarded", len(got))
	}
}

func TestTLSListenerWithClientCertificate(t *testing.T) {
	tg := startGateway(t)
	pu, _ := url.Parse("https://credgate.test:" + portOf(tg.gw.TLSProxyAddr()))
	dial := &net.Dialer{}
	tr := &http.Transport{
		Proxy: http.ProxyURL(pu),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// credgate.test is the TLS listener's name in its certificate.
			return dial.DialContext(ctx, network, tg.gw.TLSProxyAddr().String())
		},
		TLSClientConfig: &tls.Config{RootCAs: tg.caPool, Certificates: []tls.Certificate{tg.tlsCert}},
	}
	// The proxy hop trusts the listener's CA (the origin PKI here).
	tr.TLSClientConfig.RootCAs.AppendCertsFromPEM(tg.pki.caPEM)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + apiHost + "/v1/over-tls-proxy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	if got := tg.origin.all(); len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+tg.token {
		t.Errorf("origin saw %+v", got)
	}
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func TestTunnelSplicesAndAudits(t *testing.T) {
	tg := startGateway(t)
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: tg.pki.pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + tunnelHost + "/v1/spliced")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := tg.origin.all(); len(got) != 1 || got[0].Header.Get("Authorization") != "" {
		t.Errorf("origin saw %+v, want one request without a credential", got)
	}
	waitFor(t, 5*time.Second, "the tunnel's audit line", func() bool {
		return strings.Contains(tg.audit.String(), `"decision":"tunnel"`)
	})
}

func TestReadyzAndMetrics(t *testing.T) {
	tg := startGateway(t)
	resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Without the admin token: the status only (admin_test.go has the
	// detail).
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"status":"ready"`) || strings.Contains(string(body), `"rules"`) {
		t.Errorf("/readyz: %s %s", resp.Status, body)
	}
	if _, err := tg.client(t, false).Get("https://" + apiHost + "/v1/metrics"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + tg.gw.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`credgate_requests_total{decision="inject",rule="api",status="200"} 1`,
		`credgate_credential_cache_total{result="miss"} 1`,
		`credgate_policy_rules 5`,
		`credgate_provider_fetch_duration_seconds_count{provider="static"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), tg.token) {
		t.Errorf("/metrics contains the credential")
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.True(t, timeout, what, cond)
}

// TestCertificatesReloaded: a rotated interception CA and a renewed TLS
// listener certificate are used for new handshakes without a restart.
func TestCertificatesReloaded(t *testing.T) {
	tg := startGateway(t)

	// Interception CA: write a new one over the old files.
	newDir := t.TempDir()
	certPath, keyPath, err := mitm.WriteCA(newDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{certPath, filepath.Join(tg.dir, mitm.CertFile)}, {keyPath, filepath.Join(tg.dir, mitm.KeyFile)}} {
		writeFile(t, filepath.Dir(f[1]), filepath.Base(f[1])+".new", mustRead(t, f[0]))
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
	newPool := x509.NewCertPool()
	newPool.AppendCertsFromPEM(mustRead(t, certPath))
	waitFor(t, 5*time.Second, "leaves signed by the new CA", func() bool {
		pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
		tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: newPool}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + apiHost + "/v1/after-ca-rotation")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// TLS listener: a renewed certificate from another CA.
	other, err := testpki.NewAuthority("renewed listener CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.Leaf("credgate.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: the reloader keeps the old pair until
	// both match.
	writeFile(t, tg.dir, "listener-key.pem", keyPEM)
	writeFile(t, tg.dir, "listener.pem", certPEM)
	waitFor(t, 5*time.Second, "the renewed listener certificate", func() bool {
		c, err := tls.Dial("tcp", tg.gw.TLSProxyAddr().String(), &tls.Config{ServerName: "credgate.test", RootCAs: other.Pool()})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if strings.Contains(tg.logs.String(), string(keyPEM[40:80])) {
		t.Errorf("key material in the log")
	}
}

// wsEcho answers an upgrade request with 101 and then echoes each line
// the client sends as a text frame "echo: LINE" (readEcho reads it), the
// test origins' WebSocket stand-in: the client's lines are not framed
// (nothing parses that direction without placeholders), the origin's
// answers are, as the gateway scrubs them frame by frame.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprint(rw, wsSwitch(r)+"\r\n")
	rw.Flush()
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		rw.Write(wsFrame(true, 1, []byte("echo: "+line)))
		rw.Flush()
	}
}

// readEcho reads one of wsEcho's answers: the payload of a text frame.
func readEcho(br *bufio.Reader) (string, error) {
	op, p, err := readWSFrame(br)
	if err == nil && op != 1 {
		err = fmt.Errorf("opcode %d, not a text frame", op)
	}
	return string(p), err
}

// TestCredentialFailureLogIsRateLimited: a credential that cannot be
// fetched refuses every request (each with its audit line), but the log
// says so once per credential per interval, not once per request: a
// source down under load must not flood the log.
func TestCredentialFailureLogIsRateLimited(t *testing.T) {
	tg := startGateway(t)
	c := tg.client(t, false)
	const n = 30
	for range n {
		resp, err := c.Get("https://" + apiHost + "/unavailable")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %s, want 502", resp.Status)
		}
	}
	if got := strings.Count(tg.logs.String(), `"msg":"credential fetch failed"`); got != 1 {
		t.Errorf("%d \"credential fetch failed\" lines for %d refusals, want 1", got, n)
	}
	// Every refusal has its audit line (written asynchronously).
	poll.True(t, 5*time.Second, "an audit line per refusal", func() bool {
		return strings.Count(tg.audit.String(), `"credential_not_configured"`) >= n
	})
}
