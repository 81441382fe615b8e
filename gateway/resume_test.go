package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/testpki"
)

// oneConn is what one new client connection through the gateway got.
type oneConn struct {
	status int
	reason string
	// outer and inner say whether the TLS session to the proxy listener
	// (tls_listen) and the intercepted one were resumed.
	outer, inner bool
	// curve is the intercepted handshake's key exchange, certs the
	// certificates the gateway sent in it (a resumed handshake's are
	// those of the session's first).
	curve tls.CurveID
	certs int
	err   error
}

// newConnGet opens a new connection to the proxy at addr (TLS with
// proxyTLS when not nil), sends CONNECT connect:443, makes the
// intercepted TLS handshake with inner and sends one GET of path,
// reading the whole answer (and with it the session tickets).
func newConnGet(t testing.TB, addr string, proxyTLS *tls.Config, connect string, inner *tls.Config, path string) (r oneConn) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := raw
	if proxyTLS != nil {
		pc := tls.Client(raw, proxyTLS)
		if r.err = pc.Handshake(); r.err != nil {
			return r
		}
		c = pc
		defer func() { r.outer = pc.ConnectionState().DidResume }()
	}
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", connect, connect)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		r.err = err
		return r
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.status, r.reason = resp.StatusCode, resp.Header.Get(ReasonHeader)
		return r
	}
	if br.Buffered() > 0 {
		t.Fatal("the proxy sent bytes after its CONNECT answer")
	}
	tc := tls.Client(c, inner)
	if r.err = tc.Handshake(); r.err != nil {
		return r
	}
	cs := tc.ConnectionState()
	r.inner, r.curve, r.certs = cs.DidResume, cs.CurveID, len(cs.PeerCertificates)
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, connect)
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		r.err = err
		return r
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.status, r.reason = resp.StatusCode, resp.Header.Get(ReasonHeader)
	return r
}

const api2Host = "api2.origin.test"

// TestInterceptedSessionsResume: a client that keeps its TLS sessions
// resumes them on new connections; the SNI check applies to resumed
// handshakes too, a session is resumed only for the host it was made
// for, and the gateway's own upstream connections resume theirs.
func TestInterceptedSessionsResume(t *testing.T) {
	pki := newTestPKI(t, apiHost, api2Host, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(testPolicy, "hosts: [api.origin.test]", "hosts: [api.origin.test, api2.origin.test]", 1)))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"api2.origin.test:443\": %q\n", tg.origin.addr, tg.origin.addr))
	proxy := tg.gw.ProxyAddr().String()
	var upstreamResumed []bool
	var mu sync.Mutex
	tg.origin.route("/v1/upstream", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamResumed = append(upstreamResumed, r.TLS.DidResume)
		mu.Unlock()
		fmt.Fprint(w, "ok")
	})

	cache := tls.NewLRUClientSessionCache(8)
	cfg := &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, ClientSessionCache: cache, NextProtos: []string{"http/1.1"}}
	for i, wantResumed := range []bool{false, true, true} {
		r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/upstream")
		if r.err != nil || r.status != http.StatusOK || r.inner != wantResumed {
			t.Fatalf("connection %d: %+v, want 200 resumed=%v", i, r, wantResumed)
		}
		// The next connection to the origin is a new one.
		tg.gw.pools.Load().closeIdle()
	}
	seen := tg.origin.all()
	if len(seen) != 3 {
		t.Fatalf("origin saw %d requests, want 3", len(seen))
	}
	for _, s := range seen {
		if s.Header.Get("Authorization") != "Bearer "+tg.token {
			t.Errorf("a request arrived without its credential: %v", s.Header)
		}
	}
	mu.Lock()
	if len(upstreamResumed) != 3 || upstreamResumed[0] || !upstreamResumed[1] || !upstreamResumed[2] {
		t.Errorf("upstream connections resumed: %v, want [false true true]", upstreamResumed)
	}
	mu.Unlock()

	// A session of api2 offered in a tunnel to api under api2's name: the
	// SNI check refuses the handshake, resumed or not.
	cfg2 := &tls.Config{ServerName: api2Host, RootCAs: tg.caPool, ClientSessionCache: cache, NextProtos: []string{"http/1.1"}}
	if r := newConnGet(t, proxy, nil, api2Host, cfg2, "/v1/api2"); r.status != http.StatusOK {
		t.Fatalf("api2: %+v", r)
	}
	if r := newConnGet(t, proxy, nil, apiHost, cfg2, "/v1/wrong-sni"); r.err == nil {
		t.Fatalf("a handshake under another host's name (and session) succeeded: %+v", r)
	}
	waitFor(t, 5*time.Second, "the sni_mismatch audit line", func() bool {
		return strings.Contains(tg.audit.String(), `"code":"sni_mismatch"`)
	})

	// A client that offers api2's session under api's name (it does not
	// check the session's certificate): no resumption, a full handshake.
	var api2Session *tls.ClientSessionState
	{
		c := &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(2)}
		cfg3 := &tls.Config{ServerName: api2Host, RootCAs: tg.caPool, ClientSessionCache: c, NextProtos: []string{"http/1.1"}}
		if r := newConnGet(t, proxy, nil, api2Host, cfg3, "/v1/api2-again"); r.status != http.StatusOK {
			t.Fatalf("api2: %+v", r)
		}
		api2Session = c.last()
		if api2Session == nil {
			t.Fatal("no session ticket from api2's tunnel")
		}
	}
	forged := &tls.Config{ServerName: apiHost, InsecureSkipVerify: true, ClientSessionCache: fixedSession{api2Session}, NextProtos: []string{"http/1.1"}}
	if r := newConnGet(t, proxy, nil, apiHost, forged, "/v1/other-host-ticket"); r.err != nil || r.status != http.StatusOK || r.inner {
		t.Errorf("another host's session: %+v, want a full handshake and 200", r)
	}
}

// TestSessionTicketsOff: with session_tickets.enabled false nothing
// resumes.
func TestSessionTicketsOff(t *testing.T) {
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("session_tickets: {enabled: false}\nresolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr))
	cfg := &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{"http/1.1"}}
	for i := range 2 {
		if r := newConnGet(t, tg.gw.ProxyAddr().String(), nil, apiHost, cfg, "/v1/x"); r.status != http.StatusOK || r.inner {
			t.Errorf("connection %d: %+v, want 200 and a full handshake", i, r)
		}
	}
}

// recordingCache remembers the last session it was given.
type recordingCache struct {
	tls.ClientSessionCache
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	if cs != nil {
		c.cs = cs
	}
	c.mu.Unlock()
	c.ClientSessionCache.Put(key, cs)
}

func (c *recordingCache) last() *tls.ClientSessionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs
}

// fixedSession offers one session whatever the server name.
type fixedSession struct{ cs *tls.ClientSessionState }

func (f fixedSession) Get(string) (*tls.ClientSessionState, bool) { return f.cs, true }
func (f fixedSession) Put(string, *tls.ClientSessionState)        {}

// TestResumedConnectionsAreDecidedPerRequest: a kill switch and a policy
// reload apply to requests on resumed connections as to any other.
func TestResumedConnectionsAreDecidedPerRequest(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	proxy := tg.gw.ProxyAddr().String()
	cfg := &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{"http/1.1"}}
	if r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/first"); r.status != http.StatusOK || r.inner {
		t.Fatalf("first connection: %+v", r)
	}

	if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"rule","name":"api","by":"test"}`); st != 200 {
		t.Fatalf("disable: %d %v", st, body)
	}
	r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/switched-off")
	if !r.inner || r.status != http.StatusForbidden || r.reason != codeDisabled {
		t.Errorf("resumed connection under a kill switch: %+v, want resumed and 403 %s", r, codeDisabled)
	}
	if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, `{"kind":"rule","name":"api"}`); st != 200 {
		t.Fatalf("enable: %d %v", st, body)
	}

	// A reload that no longer allows /v1/*.
	writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(testPolicy, "  - name: api\n    from: local\n    to: api\n", "  - name: api\n    from: local\n    to: api\n    paths: [/allowed/*]\n", 1)))
	if err := tg.gw.ReloadPolicy(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = newConnGet(t, proxy, nil, apiHost, cfg, "/v1/after-reload")
	if !r.inner || r.status != http.StatusForbidden {
		t.Errorf("resumed connection after the reload: %+v, want resumed and 403", r)
	}
	if r := newConnGet(t, proxy, nil, apiHost, cfg, "/allowed/x"); !r.inner || r.status != http.StatusOK {
		t.Errorf("resumed connection, allowed path: %+v", r)
	}
	for _, s := range tg.origin.all() {
		if !strings.HasPrefix(s.Path, "/v1/first") && !strings.HasPrefix(s.Path, "/allowed/") {
			t.Errorf("the origin saw %s", s.Path)
		}
	}
}

const resumeIdentityPolicy = `
workloads:
  svc:
    spiffe: spiffe://test.example/ns/svc/sa/api
    require: [mtls]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: svc-api
    from: svc
    to: api
    inject: {credential: token, as: bearer}
default: deny
`

// TestResumedSessionsReverifyClientCertificates: a session resumed on
// tls_listen carries the client certificate of the handshake that made
// it, and that certificate is checked again for every connection: one
// that has expired since, or whose CA has left the trusted roots, is not
// accepted, whether the listener verifies it (tls.client_ca) or identity
// does (identity.mtls.bundles).
func TestResumedSessionsReverifyClientCertificates(t *testing.T) {
	for _, mode := range []string{"client_ca", "bundles"} {
		t.Run(mode, func(t *testing.T) {
			g := startClientCAGateway(t, mode, "")
			tg, pki, clientCA, addr, inner := g.tg, g.pki, g.clientCA, g.addr, g.inner
			proxyTLS := func(cert tls.Certificate, cache tls.ClientSessionCache) *tls.Config {
				return &tls.Config{ServerName: "credgate.test", RootCAs: pki.pool, Certificates: []tls.Certificate{cert}, ClientSessionCache: cache}
			}
			const id = "spiffe://test.example/ns/svc/sa/api"
			cert, err := clientCA.ClientLeaf("svc", id)
			if err != nil {
				t.Fatal(err)
			}
			cache := tls.NewLRUClientSessionCache(4)
			for i, want := range []bool{false, true} {
				if r := newConnGet(t, addr, proxyTLS(cert, cache), apiHost, inner, "/v1/ok"); r.status != http.StatusOK || r.outer != want {
					t.Fatalf("connection %d: %+v, want 200 resumed=%v", i, r, want)
				}
			}

			// A certificate that expires after its session was made.
			short := shortLivedClientCert(t, clientCA, id, 2*time.Second)
			shortCache := tls.NewLRUClientSessionCache(4)
			if r := newConnGet(t, addr, proxyTLS(short, shortCache), apiHost, inner, "/v1/short"); r.status != http.StatusOK {
				t.Fatalf("short-lived certificate while valid: %+v", r)
			}
			waitFor(t, 10*time.Second, "the short-lived certificate to expire", func() bool { return time.Now().After(short.Leaf.NotAfter) })
			if r := newConnGet(t, addr, proxyTLS(short, shortCache), apiHost, inner, "/v1/expired"); r.status == http.StatusOK {
				t.Errorf("an expired certificate was accepted on a new connection: %+v", r)
			}

			// The client CA leaves the trusted roots.
			other, err := testpki.NewAuthority("replacement client CA")
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, tg.dir, "client-ca.pem", other.CertPEM)
			waitFor(t, 5*time.Second, "the new client roots", func() bool {
				return newConnGet(t, addr, proxyTLS(cert, nil), apiHost, inner, "/v1/probe").status != http.StatusOK
			})
			r := newConnGet(t, addr, proxyTLS(cert, cache), apiHost, inner, "/v1/removed-ca")
			if r.status == http.StatusOK {
				t.Errorf("a session of a certificate whose CA was removed was accepted: %+v", r)
			}
			if mode == "bundles" && (!r.outer || r.status != http.StatusForbidden) {
				// The listener only requests certificates here, so the
				// session resumes and identity refuses its certificate.
				t.Errorf("bundles: %+v, want the session resumed and 403 from identity", r)
			}
			for _, s := range tg.origin.all() {
				if s.Path != "/v1/ok" && s.Path != "/v1/short" && s.Path != "/v1/probe" {
					t.Errorf("the origin saw %s", s.Path)
				}
			}
		})
	}
}

// shortLivedClientCert issues a client certificate with a SPIFFE ID that
// expires within life.
func shortLivedClientCert(t *testing.T, ca *testpki.Authority, spiffeID string, life time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "short"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(life),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestCARotationEndsSessions: after the interception CA is rotated, a
// client that kept a session gets a full handshake with a leaf of the new
// CA, not a resumption of the old one.
func TestCARotationEndsSessions(t *testing.T) {
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr))
	proxy := tg.gw.ProxyAddr().String()
	newDir := t.TempDir()
	certPath, keyPath, err := mitm.WriteCA(newDir)
	if err != nil {
		t.Fatal(err)
	}
	newPool := x509.NewCertPool()
	newPool.AppendCertsFromPEM(mustRead(t, certPath))
	both := tg.caPool.Clone()
	both.AppendCertsFromPEM(mustRead(t, certPath))
	cfg := &tls.Config{ServerName: apiHost, RootCAs: both, ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{"http/1.1"}}
	for i, want := range []bool{false, true} {
		if r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/before"); r.status != http.StatusOK || r.inner != want {
			t.Fatalf("connection %d: %+v, want resumed=%v", i, r, want)
		}
	}
	for _, f := range [][2]string{{keyPath, filepath.Join(tg.dir, mitm.KeyFile)}, {certPath, filepath.Join(tg.dir, mitm.CertFile)}} {
		writeFile(t, filepath.Dir(f[1]), filepath.Base(f[1])+".new", mustRead(t, f[0]))
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
	fresh := &tls.Config{ServerName: apiHost, RootCAs: newPool, NextProtos: []string{"http/1.1"}}
	waitFor(t, 5*time.Second, "leaves of the new CA", func() bool {
		return newConnGet(t, proxy, nil, apiHost, fresh, "/v1/probe").status == http.StatusOK
	})
	if r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/after"); r.status != http.StatusOK || r.inner {
		t.Errorf("after the CA rotation: %+v, want a full handshake", r)
	}
}

// TestInterceptedHandshakeShape: a client with Go's defaults (which offers
// the hybrid post-quantum key share and X25519) gets the hybrid
// X25519MLKEM768 key exchange on full and resumed handshakes alike (a
// faster curve must never be bought by dropping it), and the leaf alone:
// the interception CA `credgate ca init` writes is self-signed, the client
// holds it as its trust anchor, and a copy after the leaf only made the
// client check the leaf's signature twice.
func TestInterceptedHandshakeShape(t *testing.T) {
	tg := startGateway(t)
	proxy := tg.gw.ProxyAddr().String()
	cfg := &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, ClientSessionCache: tls.NewLRUClientSessionCache(4), NextProtos: []string{"http/1.1"}}
	for i, resumed := range []bool{false, true} {
		r := newConnGet(t, proxy, nil, apiHost, cfg, "/v1/bench")
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("connection %d: %+v", i, r)
		}
		if r.inner != resumed || r.certs != 1 {
			t.Errorf("connection %d: resumed %v with %d certificates, want resumed %v with the leaf alone", i, r.inner, r.certs, resumed)
		}
		if r.curve != tls.X25519MLKEM768 {
			t.Errorf("connection %d: key exchange %v, want %v", i, r.curve, tls.X25519MLKEM768)
		}
	}
}

// clientCAGateway is a gateway with a tls_listen listener whose clients'
// certificates are verified by a client CA written to client-ca.pem: as
// tls.client_ca (mode "client_ca") or as an identity.mtls.bundles trust
// bundle (mode "bundles"), re-read every 50ms. policy.yaml is
// resumeIdentityPolicy.
type clientCAGateway struct {
	tg       *testGateway
	pki      *testPKI
	clientCA *testpki.Authority
	// addr is the tls_listen address; inner the client's TLS
	// configuration inside a tunnel to apiHost.
	addr  string
	inner *tls.Config
}

// startClientCAGateway starts a clientCAGateway; extra is more config.
func startClientCAGateway(t *testing.T, mode, extra string) *clientCAGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	clientCA, err := testpki.NewAuthority("client CA")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, tg.dir, "client-ca.pem", clientCA.CertPEM)
	writeFile(t, tg.dir, "policy.yaml", []byte(resumeIdentityPolicy))
	extra += fmt.Sprintf("tls_listen: 127.0.0.1:0\nresolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr)
	if mode == "client_ca" {
		extra += "tls: {cert: listener.pem, key: listener-key.pem, client_ca: client-ca.pem, reload_interval: 50ms}\n"
	} else {
		extra += "tls: {cert: listener.pem, key: listener-key.pem}\nidentity:\n  mtls:\n    reload_interval: 50ms\n    bundles:\n      - {file: client-ca.pem, trust_domain: test.example}\n"
	}
	tg.run(t, extra)
	return &clientCAGateway{tg: tg, pki: pki, clientCA: clientCA, addr: tg.gw.TLSProxyAddr().String(),
		inner: &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}}}
}

// proxyTLS is the client's TLS configuration for the listener, presenting c.
func (g *clientCAGateway) proxyTLS(c tls.Certificate) *tls.Config {
	return &tls.Config{ServerName: "credgate.test", RootCAs: g.pki.pool, Certificates: []tls.Certificate{c}}
}

// leaf is a client certificate of the client CA for the policy's workload.
func (g *clientCAGateway) leaf(t *testing.T) tls.Certificate {
	t.Helper()
	cert, err := g.clientCA.ClientLeaf("svc", "spiffe://test.example/ns/svc/sa/api")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// replaceCA writes a new client CA in place of the gateway's (keeping the
// old one beside it when keep) and waits until it is in force: a
// certificate of the new CA is accepted on a new connection.
func (g *clientCAGateway) replaceCA(t *testing.T, keep bool) {
	t.Helper()
	other, err := testpki.NewAuthority("replacement client CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := other.ClientLeaf("svc", "spiffe://test.example/ns/svc/sa/api")
	if err != nil {
		t.Fatal(err)
	}
	roots := other.CertPEM
	if keep {
		roots = append(append([]byte{}, other.CertPEM...), g.clientCA.CertPEM...)
	}
	writeFile(t, g.tg.dir, "client-ca.pem", roots)
	waitFor(t, 5*time.Second, "the new client roots", func() bool {
		return newConnGet(t, g.addr, g.proxyTLS(otherCert), apiHost, g.inner, "/v1/probe").status == http.StatusOK
	})
}
