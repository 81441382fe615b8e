package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/testpki"
)

// TestListenerTLSOffers: every TLS listener the gateway serves — the
// interception handshake inside a CONNECT tunnel, tls_listen and an
// HTTPS admin listener — accepts TLS 1.2 and 1.3 only and, under TLS 1.2,
// only ECDHE key exchange with AEAD ciphers (no CBC mode, no SHA-1 MAC,
// no RSA key exchange, no 3DES); it selects only the ALPN protocols it
// serves (a client offering only h2 gets it where HTTP/2 is served and is
// refused elsewhere; one offering none gets HTTP/1.1 without ALPN). The interception handshake without SNI (CONNECT to an IP
// literal) presents a leaf valid for that IP; with an SNI naming another
// IP it is refused.
func TestListenerTLSOffers(t *testing.T) {
	tg := newTLSProbeGateway(t)

	type offer struct {
		name          string
		min, max      uint16
		suites        []uint16
		alpn          []string
		wantOK        bool
		wantProtoFrom []string // the negotiated protocol is one of these ("" for none)
	}
	var offers []offer
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		offers = append(offers, offer{name: tls.VersionName(v), min: v, max: v})
	}
	for _, s := range tls.CipherSuites() {
		if !supports(s, tls.VersionTLS12) || !strings.Contains(s.Name, "ECDSA") {
			continue // TLS 1.3 suites are not configurable; the listeners' keys are ECDSA
		}
		aead := strings.Contains(s.Name, "_GCM_") || strings.Contains(s.Name, "CHACHA20")
		offers = append(offers, offer{name: "TLS1.2/" + s.Name, min: tls.VersionTLS12, max: tls.VersionTLS12, suites: []uint16{s.ID}, wantOK: aead})
	}
	for _, s := range tls.InsecureCipherSuites() {
		if supports(s, tls.VersionTLS12) && strings.Contains(s.Name, "ECDSA") {
			offers = append(offers, offer{name: "TLS1.2/" + s.Name, min: tls.VersionTLS12, max: tls.VersionTLS12, suites: []uint16{s.ID}})
		}
	}
	offers = append(offers,
		offer{name: "TLS1.3", min: tls.VersionTLS13, max: tls.VersionTLS13, wantOK: true},
		offer{name: "TLS1.2-default", min: tls.VersionTLS12, max: tls.VersionTLS12, wantOK: true},
		offer{name: "alpn-unknown-only", alpn: []string{"spdy/3.1"}},
		offer{name: "alpn-h2-and-unknown", alpn: []string{"spdy/3.1", "h2"}, wantOK: true, wantProtoFrom: []string{"h2", ""}},
		offer{name: "alpn-http1", alpn: []string{"http/1.1"}, wantOK: true, wantProtoFrom: []string{"http/1.1"}},
		offer{name: "alpn-h2-only", alpn: []string{"h2"}, wantOK: true, wantProtoFrom: []string{"h2"}},
		offer{name: "alpn-none", wantOK: true, wantProtoFrom: []string{""}},
	)

	listeners := []struct {
		name string
		// handshake does the TLS handshake of c on this listener.
		handshake func(t *testing.T, c *tls.Config) (tls.ConnectionState, error)
		// h2 is whether the listener serves HTTP/2.
		h2 bool
	}{
		{"interception", func(t *testing.T, c *tls.Config) (tls.ConnectionState, error) {
			return tg.interceptHandshake(t, apiHost, c)
		}, true},
		{"tls_listen", func(t *testing.T, c *tls.Config) (tls.ConnectionState, error) {
			return dialState(tg.gw.TLSProxyAddr().String(), c)
		}, false},
		{"admin", func(t *testing.T, c *tls.Config) (tls.ConnectionState, error) {
			return dialState(tg.gw.AdminAddr().String(), c)
		}, false},
	}
	failed, cells := 0, 0
	for _, l := range listeners {
		for _, o := range offers {
			cells++
			t.Run(l.name+"/"+o.name, func(t *testing.T) {
				c := &tls.Config{ServerName: "credgate.test", RootCAs: tg.roots, MinVersion: o.min, MaxVersion: o.max, CipherSuites: o.suites, NextProtos: o.alpn}
				if l.name == "interception" {
					c.ServerName = apiHost
				}
				st, err := l.handshake(t, c)
				wantOK := o.wantOK
				if !l.h2 && (o.name == "alpn-h2-and-unknown" || o.name == "alpn-h2-only") {
					wantOK = false // an HTTP/1.1 listener shares no protocol with it (RFC 7301 §3.2)
				}
				if wantOK != (err == nil) {
					failed++
					t.Errorf("handshake: %v (%s), want success %v", err, tls.CipherSuiteName(st.CipherSuite), wantOK)
					return
				}
				if err != nil || o.wantProtoFrom == nil {
					return
				}
				want := o.wantProtoFrom
				if !l.h2 {
					want = []string{"http/1.1", ""}
					if len(o.alpn) == 0 || o.alpn[0] == "spdy/3.1" {
						want = []string{""}
					}
				}
				ok := false
				for _, w := range want {
					ok = ok || st.NegotiatedProtocol == w
				}
				if !ok {
					failed++
					t.Errorf("negotiated %q, want one of %q", st.NegotiatedProtocol, want)
				}
			})
		}
	}
	t.Logf("%d of %d cells failed", failed, cells)
}

// TestInterceptionWithoutSNI: a CONNECT to an IP literal is intercepted
// with a leaf whose only name is that IP (clients send no SNI for an IP,
// RFC 6066 §3, and Go's client sends none); a ClientHello naming a host
// is refused.
func TestInterceptionWithoutSNI(t *testing.T) {
	tg := newTLSProbeGateway(t)
	for _, tc := range []struct {
		connect, sni string
		wantOK       bool
	}{
		{"127.0.0.1", "", true},
		{"[::1]", "", true},
		{"127.0.0.1", apiHost, false},
	} {
		t.Run(tc.connect+"/"+tc.sni, func(t *testing.T) {
			// Go's client sends no SNI for an IP; set it by hand through
			// a config that verifies the IP itself.
			ip := strings.Trim(tc.connect, "[]")
			c := &tls.Config{RootCAs: tg.roots, ServerName: tc.sni, InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
				leaf := cs.PeerCertificates[0]
				if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 1 {
					return fmt.Errorf("leaf names %v %v, want the IP alone", leaf.DNSNames, leaf.IPAddresses)
				}
				_, err := leaf.Verify(x509.VerifyOptions{DNSName: ip, Roots: tg.roots})
				return err
			}}
			_, err := tg.interceptHandshake(t, tc.connect, c)
			if tc.wantOK != (err == nil) {
				t.Errorf("handshake: %v, want success %v", err, tc.wantOK)
			}
		})
	}
}

func supports(s *tls.CipherSuite, v uint16) bool {
	for _, x := range s.SupportedVersions {
		if x == v {
			return true
		}
	}
	return false
}

// tlsProbeGateway is a gateway with tls_listen and an HTTPS admin
// listener, whose policy intercepts apiHost and the loopback IPs.
type tlsProbeGateway struct {
	*testGateway
	// roots trust the interception CA and the listeners' certificate.
	roots *x509.CertPool
}

func newTLSProbeGateway(t *testing.T) *tlsProbeGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(`workloads:
  local:
    cidrs: [127.0.0.1/32, "::1/128"]
destinations:
  api:
    hosts: [api.origin.test, 127.0.0.1, "::1"]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: api
    from: local
    to: api
    inject: {credential: token, as: bearer}
default: deny
`))
	tg.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {cert: listener.pem, key: listener-key.pem}
admin: {tls: {cert: listener.pem, key: listener-key.pem}}
resolve:
  "api.origin.test:443": %q
`, tg.origin.addr))
	roots := tg.caPool.Clone()
	roots.AddCert(pki.ca.Cert)
	return &tlsProbeGateway{testGateway: tg, roots: roots}
}

// interceptHandshake CONNECTs to host:443 on the plain listener and does
// the TLS handshake c inside the tunnel.
func (tg *tlsProbeGateway) interceptHandshake(t *testing.T, host string, c *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", host, resp, err)
	}
	tc := tls.Client(conn, c)
	err = tc.Handshake()
	return tc.ConnectionState(), err
}

func dialState(addr string, c *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", addr, c)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer tc.Close()
	return tc.ConnectionState(), nil
}

// TestInterceptionCANameConstraints: with an interception CA limited by
// `ca init --permit`, a CONNECT the gateway would intercept to a host
// outside the constraints is refused 403 ca_not_permitted with an audit
// line saying deny (no handshake that fails later, no leaf signed); a host inside is
// intercepted, and a tunnel rule (no leaf) is unaffected.
func TestInterceptionCANameConstraints(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	tg.caPermit = []string{"api.origin.test"}
	// testPolicy with a destination 127.0.0.1 and a rule injecting there.
	pol := strings.Replace(testPolicy, "credentials:\n", "  loopback:\n    hosts: [127.0.0.1]\n    allow_private: true\ncredentials:\n", 1)
	pol = strings.Replace(pol, "default: deny\n", "  - name: loopback\n    from: local\n    to: loopback\n    inject: {credential: token, as: bearer}\ndefault: deny\n", 1)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf(`resolve:
  "api.origin.test:443": %q
  "tunnel.origin.test:443": %q
`, tg.origin.addr, tg.origin.addr))
	for _, tc := range []struct {
		host string
		want int
		code string
	}{
		{apiHost, http.StatusOK, ""},
		{"127.0.0.1", http.StatusForbidden, codeCANotPermitted},
		{tunnelHost, http.StatusOK, ""},
	} {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", tc.host, tc.host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.want || resp.Header.Get(ReasonHeader) != tc.code {
			t.Errorf("CONNECT %s: %d %s, want %d %s", tc.host, resp.StatusCode, resp.Header.Get(ReasonHeader), tc.want, tc.code)
		}
		if tc.code != "" {
			waitFor(t, 5*time.Second, "the audit line", func() bool { return auditHas(tg.audit.String(), tc.host, tc.code) })
			// Audited as the refusal, not as the intercept decision it
			// refused.
			for _, l := range strings.Split(tg.audit.String(), "\n") {
				if strings.Contains(l, `"code":"`+tc.code+`"`) && !strings.Contains(l, `"decision":"deny"`) {
					t.Errorf("CONNECT %s refused %s audited as: %s", tc.host, tc.code, l)
				}
			}
		}
	}
}

// TestCAReloadKeepsLastGood: an interception CA replaced on disk by one
// that does not load (not a CA, expired, its key mismatched) is refused
// with a log line naming the cause, and the last good CA goes on signing.
func TestCAReloadKeepsLastGood(t *testing.T) {
	tg := startGateway(t)
	caPath, keyPath := filepath.Join(tg.dir, mitm.CertFile), filepath.Join(tg.dir, mitm.KeyFile)
	goodCert, goodKey := mustRead(t, caPath), mustRead(t, keyPath)
	other, err := testpki.NewAuthority("other")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.Leaf("x.test")
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKeyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"not a CA", leafPEM, leafKeyPEM, "is not a CA certificate"},
		{"key mismatch", goodCert, other.KeyPEM, "private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, tg.dir, mitm.KeyFile, tc.key)
			writeFile(t, tg.dir, mitm.CertFile, tc.cert)
			waitFor(t, 5*time.Second, "the refused reload's log line", func() bool {
				return strings.Contains(tg.logs.String(), "keeping the last good content") && strings.Contains(tg.logs.String(), tc.want)
			})
			resp, err := tg.client(t, false).Get("https://" + apiHost + "/v1/after-bad-ca")
			if err != nil {
				t.Fatalf("the last good CA no longer signs: %v", err)
			}
			resp.Body.Close()
			writeFile(t, tg.dir, mitm.KeyFile, goodKey)
			writeFile(t, tg.dir, mitm.CertFile, goodCert)
		})
	}
}

// TestOversizedClientHello: a ClientHello declaring 16 MiB is refused at
// its header on every TLS listener (crypto/tls takes handshake messages
// of 64 KiB at most): the connection is answered with an alert and
// closed at once, nothing waits for or buffers the rest.
func TestOversizedClientHello(t *testing.T) {
	tg := newTLSProbeGateway(t)
	// A TLS record (handshake, 100 bytes) whose handshake header declares
	// a ClientHello of 2^24-1 bytes.
	hello := append([]byte{0x16, 0x03, 0x01, 0x00, 100, 0x01, 0xff, 0xff, 0xff}, make([]byte, 96)...)
	for _, l := range []string{"interception", "tls_listen", "admin"} {
		t.Run(l, func(t *testing.T) {
			var conn net.Conn
			var err error
			switch l {
			case "interception":
				conn, err = net.Dial("tcp", tg.gw.ProxyAddr().String())
				if err == nil {
					fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
					br := bufio.NewReader(conn)
					resp, rerr := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
					if rerr != nil || resp.StatusCode != http.StatusOK {
						t.Fatalf("CONNECT: %v %v", resp, rerr)
					}
				}
			case "tls_listen":
				conn, err = net.Dial("tcp", tg.gw.TLSProxyAddr().String())
			case "admin":
				conn, err = net.Dial("tcp", tg.gw.AdminAddr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			_ = conn.SetDeadline(start.Add(5 * time.Second))
			if _, err := conn.Write(hello); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("the connection stayed open: %v", err)
			}
			if len(b) == 0 || b[0] != 0x15 { // an alert record
				t.Errorf("answer %x, want a TLS alert", b)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %s", d)
			}
		})
	}
}

// TestLeafTTLConfig: ca.leaf_ttl is refused, at its key, outside 1m to
// 397 days: longer-lived server certificates are refused by clients,
// shorter ones would be signed at nearly every handshake.
func TestLeafTTLConfig(t *testing.T) {
	for _, tc := range []struct {
		ttl  string
		want string // "" when accepted
	}{
		{"24h", ""}, {"1m", ""}, {"9528h", ""},
		{"-1h", "ca.leaf_ttl: want a duration"},
		{"30s", "c.yaml:2:31: ca.leaf_ttl: 30s is outside"},
		{"9529h", "c.yaml:2:31: ca.leaf_ttl: 9529h0m0s is outside"},
		{"87600h", "c.yaml:2:31: ca.leaf_ttl: 87600h0m0s is outside"},
	} {
		_, err := ParseConfig("c.yaml", []byte("policy: p.yaml\nca: {cert: c.pem, key: k.pem, leaf_ttl: "+tc.ttl+"}\n"))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("leaf_ttl %s: %v, want %q", tc.ttl, err, tc.want)
		}
	}
}
