package gateway

import (
	"bufio"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
)

// hostileOrigin is a TLS server on 127.0.0.1 whose configuration is
// chosen by the SNI of each ClientHello (one host name per case), and
// which records, per name, the application bytes it received after a
// handshake: what a credential would have been written into.
type hostileOrigin struct {
	ln    net.Listener
	mu    sync.Mutex
	confs map[string]*tls.Config
	got   map[string]int // application bytes received, by SNI
	auth  map[string]string
	certs map[string]int // client certificates received, by SNI
}

func startHostileOrigin(t *testing.T) *hostileOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &hostileOrigin{ln: ln, confs: map[string]*tls.Config{}, got: map[string]int{}, auth: map[string]string{}, certs: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.serve(c)
			}()
		}
	}()
	return o
}

func (o *hostileOrigin) set(host string, c *tls.Config) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.confs[host] = c
}

func (o *hostileOrigin) received(host string) (int, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got[host], o.auth[host]
}

func (o *hostileOrigin) clientCerts(host string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.certs[host]
}

func (o *hostileOrigin) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var sni string
	tc := tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		sni = h.ServerName
		if conf := o.confs[sni]; conf != nil {
			return conf, nil
		}
		return nil, fmt.Errorf("no case for %q", sni)
	}})
	if err := tc.Handshake(); err != nil {
		return
	}
	if len(tc.ConnectionState().PeerCertificates) > 0 {
		o.mu.Lock()
		o.certs[sni]++
		o.mu.Unlock()
	}
	cr := &countReader{r: tc}
	req, err := http.ReadRequest(bufio.NewReader(cr))
	o.mu.Lock()
	o.got[sni] += int(cr.n.Load())
	if err == nil {
		o.auth[sni] = req.Header.Get("Authorization")
	}
	o.mu.Unlock()
	if err != nil {
		return
	}
	_, _ = io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
}

type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// certSpec is what a hostile origin's certificate looks like.
type certSpec struct {
	names     []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	key       crypto.Signer // the leaf key; P-256 when nil
	sigAlg    x509.SignatureAlgorithm
	isCA      bool
	eku       []x509.ExtKeyUsage
	permitted []string // name constraints (for an intermediate)
	cn        string   // the subject's common name; "hostile" when empty
}

// sign makes a certificate of spec signed by parent (self-signed when
// parent is nil) and returns it with its key.
func sign(t *testing.T, spec certSpec, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := spec.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: cmp.Or(spec.cn, "hostile")},
		DNSNames:              spec.names,
		IPAddresses:           spec.ips,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		SignatureAlgorithm:    spec.sigAlg,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		PermittedDNSDomains:   spec.permitted,
	}
	if !spec.notBefore.IsZero() {
		tmpl.NotBefore = spec.notBefore
	}
	if !spec.notAfter.IsZero() {
		tmpl.NotAfter = spec.notAfter
	}
	if spec.eku != nil {
		tmpl.ExtKeyUsage = spec.eku
	}
	if spec.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func serverConf(key crypto.Signer, chain ...*x509.Certificate) *tls.Config {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	// Client certificates are asked for (the tlsclient column), not
	// verified: what the origin trusts is not under test.
	return &tls.Config{Certificates: []tls.Certificate{c}, NextProtos: []string{"http/1.1"}, SessionTicketsDisabled: true, ClientAuth: tls.RequestClientCert}
}

// TestUpstreamTLSRefusedBeforeRequest: an origin whose TLS the gateway
// must not trust with a credential — wrong name, expired, not yet valid,
// self-signed, an untrusted root, an incomplete chain, valid for the IP
// only, an intermediate whose name constraints exclude the host, a SHA-1
// signature, an RSA key under 2048 bits, a leaf that is a CA, a leaf for
// client authentication only, a wildcard that is not the host's leftmost
// label (two labels up, under the host, a partial label), the host in the
// common name alone, TLS 1.0/1.1 only, no common ALPN protocol —
// is refused with 502 upstream_tls_error naming the cause, audited, and
// receives not one byte of the request, for HTTP/1.1 and HTTP/2 clients and
// for a rule presenting a TLS client certificate upstream (tlsclient). The
// valid origins (the controls) receive the credential or the certificate;
// an origin that changes its certificate between connections is refused
// at the first connection with the new one.
func TestUpstreamTLSRefusedBeforeRequest(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	ho := startHostileOrigin(t)
	root, rootKey := pki.ca.Cert, crypto.Signer(pki.ca.Key)
	now := time.Now()

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, otherKey := sign(t, certSpec{isCA: true}, nil, nil)

	type tcase struct {
		name string
		// conf builds the origin's TLS configuration for host.
		conf func(host string) *tls.Config
		// want is a phrase of the refusal's reason; "" for the control.
		want string
	}
	leafFor := func(host string, spec certSpec) *tls.Config {
		if spec.names == nil && spec.ips == nil {
			spec.names = []string{host}
		}
		c, k := sign(t, spec, root, rootKey)
		return serverConf(k, c)
	}
	cases := []tcase{
		{"valid", func(h string) *tls.Config { return leafFor(h, certSpec{}) }, ""},
		{"valid-rsa2048", func(h string) *tls.Config { return leafFor(h, certSpec{key: rsa2048}) }, ""},
		{"wrong-name", func(h string) *tls.Config { return leafFor(h, certSpec{names: []string{"other.test"}}) }, "name mismatch"},
		{"expired", func(h string) *tls.Config {
			return leafFor(h, certSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)})
		}, "expired or not yet valid"},
		{"not-yet-valid", func(h string) *tls.Config {
			return leafFor(h, certSpec{notBefore: now.Add(24 * time.Hour), notAfter: now.Add(48 * time.Hour)})
		}, "expired or not yet valid"},
		{"self-signed", func(h string) *tls.Config {
			c, k := sign(t, certSpec{names: []string{h}}, nil, nil)
			return serverConf(k, c)
		}, "unknown authority"},
		{"untrusted-root", func(h string) *tls.Config {
			c, k := sign(t, certSpec{names: []string{h}}, otherRoot, otherKey)
			return serverConf(k, c)
		}, "unknown authority"},
		{"missing-intermediate", func(h string) *tls.Config {
			ic, ik := sign(t, certSpec{isCA: true}, root, rootKey)
			c, k := sign(t, certSpec{names: []string{h}}, ic, ik)
			return serverConf(k, c)
		}, "unknown authority"},
		{"ip-only", func(h string) *tls.Config { return leafFor(h, certSpec{ips: []net.IP{net.IPv4(127, 0, 0, 1)}}) }, "name mismatch"},
		// Wildcards match one whole leftmost label (RFC 6125 §6.4.3, as
		// Go and browsers read it): *.test does not cover x.hostile.test,
		// *.H does not cover H itself, and a partial label (par*.hostile.test)
		// is no wildcard at all.
		{"wildcard-control", func(h string) *tls.Config {
			return leafFor(h, certSpec{names: []string{"*" + h[strings.Index(h, "."):]}})
		}, ""},
		{"wildcard-two-levels", func(h string) *tls.Config { return leafFor(h, certSpec{names: []string{"*.test"}}) }, "name mismatch"},
		{"wildcard-below-host", func(h string) *tls.Config { return leafFor(h, certSpec{names: []string{"*." + h}}) }, "name mismatch"},
		{"wildcard-partial", func(h string) *tls.Config {
			return leafFor(h, certSpec{names: []string{h[:3] + "*" + h[strings.Index(h, "."):]}})
		}, "name mismatch"},
		// The host only in the subject's common name: no SAN at all.
		{"common-name-only", func(h string) *tls.Config { return leafFor(h, certSpec{names: []string{}, cn: h}) }, "name mismatch"},
		{"name-constrained-intermediate", func(h string) *tls.Config {
			ic, ik := sign(t, certSpec{isCA: true, permitted: []string{"allowed.test"}}, root, rootKey)
			c, k := sign(t, certSpec{names: []string{h}}, ic, ik)
			return serverConf(k, c, ic)
		}, "not acceptable"},
		{"sha1-signature", func(h string) *tls.Config {
			return leafFor(h, certSpec{sigAlg: x509.ECDSAWithSHA1})
		}, "SHA1"},
		{"rsa-1024", func(h string) *tls.Config { return leafFor(h, certSpec{key: rsa1024}) }, "1024-bit RSA"},
		{"leaf-is-ca", func(h string) *tls.Config { return leafFor(h, certSpec{isCA: true}) }, "is a CA certificate"},
		{"client-auth-only", func(h string) *tls.Config {
			return leafFor(h, certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		}, "not acceptable"},
		{"tls1.0-only", func(h string) *tls.Config {
			c := leafFor(h, certSpec{})
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
			return c
		}, "share no TLS version"},
		{"tls1.1-only", func(h string) *tls.Config {
			c := leafFor(h, certSpec{})
			c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
			return c
		}, "share no TLS version"},
		{"no-common-alpn", func(h string) *tls.Config {
			c := leafFor(h, certSpec{})
			c.NextProtos = []string{"spdy/3.1"}
			return c
		}, "no application protocol"},
	}

	var policy, resolve strings.Builder
	// The third column: an HTTP/1.1 client whose rule presents a TLS
	// client certificate upstream (tlsclient: a transport per certificate).
	client, err := pki.ca.ClientLeaf("gateway-client")
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, clientKeyPEM, err := testpki.PEM(client)
	if err != nil {
		t.Fatal(err)
	}
	certFile := writeFile(t, tg.dir, "upstream-client.pem", clientPEM)
	keyFile := writeFile(t, tg.dir, "upstream-client-key.pem", clientKeyPEM)
	fmt.Fprintf(&policy, `workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  hostile:
    hosts: ["*.hostile.test"]
    allow_private: true
  mtls:
    hosts: ["*.mtls.test"]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
  client-cert:
    provider: static
    fields:
      certificate: {file: %q}
      private_key: {file: %q}
rules:
  - name: hostile
    from: local
    to: hostile
    inject: {credential: token, as: bearer}
  - name: mtls
    from: local
    to: mtls
    inject: {credential: client-cert, as: tlsclient}
default: deny
`, certFile, keyFile)
	resolve.WriteString("resolve:\n")
	protos := []string{"h1", "h2", "tlsclient"}
	hostOf := func(name, p string) string {
		if p == "tlsclient" {
			return name + ".mtls.test"
		}
		return name + "-" + p + ".hostile.test"
	}
	for _, c := range cases {
		for _, p := range protos {
			host := hostOf(c.name, p)
			ho.set(host, c.conf(host))
			fmt.Fprintf(&resolve, "  %q: %q\n", host+":443", ho.ln.Addr().String())
		}
	}
	// An origin that changes its certificate between connections: the
	// first is valid, the next (its connections are closed after each
	// answer) for another name.
	for _, p := range protos[:2] {
		host := "changes-" + p + ".hostile.test"
		ho.set(host, leafFor(host, certSpec{}))
		fmt.Fprintf(&resolve, "  %q: %q\n", host+":443", ho.ln.Addr().String())
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(policy.String()))
	tg.run(t, resolve.String())

	failed := 0
	for _, c := range cases {
		for _, p := range protos {
			host := hostOf(c.name, p)
			t.Run(c.name+"/"+p, func(t *testing.T) {
				resp, err := tg.client(t, p == "h2").Get("https://" + host + "/x")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				n, auth := ho.received(host)
				if c.want == "" {
					if p == "tlsclient" {
						if resp.StatusCode != http.StatusOK || ho.clientCerts(host) == 0 {
							t.Errorf("control: status %d (%s), the origin saw %d client certificates", resp.StatusCode, body, ho.clientCerts(host))
						}
						return
					}
					if resp.StatusCode != http.StatusOK || auth != "Bearer "+tg.token {
						t.Errorf("control: status %d (%s), origin saw the credential: %v", resp.StatusCode, body, auth == "Bearer "+tg.token)
					}
					return
				}
				bad := false
				if n != 0 {
					t.Errorf("the origin received %d bytes of the request", n)
					bad = true
				}
				if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ReasonHeader) != codeUpstreamTLS || !strings.Contains(string(body), c.want) {
					t.Errorf("status %d %s (%s), want 502 %s naming %q", resp.StatusCode, resp.Header.Get(ReasonHeader), body, codeUpstreamTLS, c.want)
					bad = true
				}
				if !poll.Within(5*time.Second, func() bool { return auditHas(tg.audit.String(), host, codeUpstreamTLS) }) {
					t.Errorf("no audit line with %s for %s", codeUpstreamTLS, host)
					bad = true
				}
				if bad {
					failed++
				}
			})
		}
	}
	for _, p := range protos[:2] {
		host := "changes-" + p + ".hostile.test"
		t.Run("changes-certificate/"+p, func(t *testing.T) {
			c := tg.client(t, p == "h2")
			resp, err := c.Get("https://" + host + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			before, _ := ho.received(host)
			if resp.StatusCode != http.StatusOK || before == 0 {
				t.Fatalf("first connection: status %d, origin received %d bytes", resp.StatusCode, before)
			}
			ho.set(host, leafFor(host, certSpec{names: []string{"other.test"}}))
			resp, err = c.Get("https://" + host + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if after, _ := ho.received(host); resp.StatusCode != http.StatusBadGateway || after != before {
				t.Errorf("after the change: status %d, origin received %d more bytes", resp.StatusCode, after-before)
			}
		})
	}
	refusals := 0
	for _, c := range cases {
		if c.want != "" {
			refusals++
		}
	}
	t.Logf("%d of %d refusal cells failed", failed, len(protos)*refusals)
}

// auditHas reports whether an audit line names host and code.
func auditHas(audit, host, code string) bool {
	for _, l := range strings.Split(audit, "\n") {
		if strings.Contains(l, `"host":"`+host+`"`) && strings.Contains(l, `"code":"`+code+`"`) {
			return true
		}
	}
	return false
}
