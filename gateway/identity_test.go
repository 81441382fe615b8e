package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/testpki"
)

const identityPolicy = `
workloads:
  billing:
    spiffe: spiffe://test.example/ns/billing/sa/api
    namespace: billing
    require: [mtls, jwt]
  web:
    spiffe: spiffe://test.example/ns/web/sa/app
    namespace: web
    require: [mtls, jwt]
  jobs:
    namespace: jobs
    require: [jwt]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: billing-api
    from: billing
    to: api
    inject: {credential: token, as: bearer}
  - name: jobs-api
    from: jobs
    to: api
    inject: {credential: token, as: bearer}
default: deny
`

// identityEnv is a gateway whose TLS listener verifies client
// certificates and whose jwt factor accepts Kubernetes-style tokens.
type identityEnv struct {
	*testGateway
	signer   jose.Signer
	forger   jose.Signer
	clientCA *testpki.Authority
	roots    *x509.CertPool
}

func (e *identityEnv) token(t testing.TB, ns string, forged bool) string {
	t.Helper()
	s := e.signer
	if forged {
		s = e.forger
	}
	claims := map[string]any{
		"iss": "https://k8s.test", "aud": []string{"credgate"}, "sub": "system:serviceaccount:" + ns + ":api",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": "api", "uid": "u"}},
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// clientCert issues a client certificate with a SPIFFE ID.
func (e *identityEnv) clientCert(t *testing.T, spiffeID string) tls.Certificate {
	t.Helper()
	c, err := e.clientCA.ClientLeaf("client", spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSigner(t testing.TB) (jose.Signer, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return s, &k.PublicKey
}

func startIdentityGateway(t *testing.T) *identityEnv {
	t.Helper()
	pki := newTestPKI(t, apiHost, "credgate.test")
	e := &identityEnv{testGateway: newTestGateway(t, pki, startOrigin(t, pki))}
	var err error
	if e.clientCA, err = testpki.NewAuthority("client CA"); err != nil {
		t.Fatal(err)
	}
	var pub *ecdsa.PublicKey
	e.signer, pub = newSigner(t)
	e.forger, _ = newSigner(t) // same key id, key not published
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	writeFile(t, e.dir, "client-ca.pem", e.clientCA.CertPEM)
	writeFile(t, e.dir, "jwks.json", jwks)
	writeFile(t, e.dir, "policy.yaml", []byte(identityPolicy))
	e.run(t, fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls: {cert: listener.pem, key: listener-key.pem, client_ca: client-ca.pem}
resolve: {"api.origin.test:443": %q}
identity:
  jwt:
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
`, e.origin.addr))
	e.roots = e.caPool.Clone()
	e.roots.AppendCertsFromPEM(pki.caPEM)
	return e
}

// get sends GET https://api.origin.test/PATH through the TLS listener,
// presenting cert (if any) and the token as Bearer proxy credentials.
func (e *identityEnv) get(t *testing.T, cert *tls.Certificate, bearer, path string) *http.Response {
	t.Helper()
	addr := e.gw.TLSProxyAddr().String()
	pu, _ := url.Parse("https://credgate.test:" + portOf(e.gw.TLSProxyAddr()))
	tc := &tls.Config{RootCAs: e.roots}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	var d net.Dialer
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: tc,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	if bearer != "" {
		tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {"Bearer " + bearer}}
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + apiHost + path)
	if err != nil {
		// A refused CONNECT surfaces as an error; turn it into its status.
		var status int
		if _, scanErr := fmt.Sscanf(errSuffix(err.Error()), "%d", &status); scanErr == nil {
			return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody}
		}
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// errSuffix returns what follows the last ": " of a transport error,
// where Go puts the proxy's CONNECT status ("Forbidden" and the code).
func errSuffix(s string) string {
	if i := strings.LastIndex(s, "proxyconnect tcp: "); i >= 0 {
		s = s[i:]
	}
	for _, code := range []string{"403", "503", "407"} {
		if strings.Contains(s, code) || strings.Contains(s, http.StatusText(atoi(code))) {
			return code
		}
	}
	return s
}

func atoi(s string) int { n := 0; fmt.Sscanf(s, "%d", &n); return n }

func TestIdentityFactorsMustVerifyAndAgree(t *testing.T) {
	e := startIdentityGateway(t)
	billingCert := e.clientCert(t, "spiffe://test.example/ns/billing/sa/api")
	tests := []struct {
		name       string
		cert       *tls.Certificate
		token      string
		wantStatus int
		wantAudit  string // a fragment of the CONNECT or request audit line
	}{
		{"both-agree", &billingCert, e.token(t, "billing", false), 200, `"workload":"billing","factors":["source","mtls","jwt"]`},
		{"cert-without-token", &billingCert, "", 403, `"code":"no_rule"`},
		{"conflicting-token", &billingCert, e.token(t, "web", false), 403, `"code":"factor_conflict"`},
		{"forged-token", &billingCert, e.token(t, "billing", true), 403, `"code":"identity_invalid"`},
		{"token-only", nil, e.token(t, "jobs", false), 200, `"workload":"jobs","factors":["source","jwt"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.get(t, tt.cert, tt.token, "/v1/"+tt.name)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			waitFor(t, 5*time.Second, "audit line "+tt.wantAudit, func() bool { return strings.Contains(e.audit.String(), tt.wantAudit) })
		})
	}
	for _, r := range e.origin.all() {
		if !strings.HasSuffix(r.Path, "both-agree") && !strings.HasSuffix(r.Path, "token-only") {
			t.Errorf("origin saw %s", r.Path)
		}
	}
	for _, tt := range tests {
		if tt.token != "" && (strings.Contains(e.audit.String(), tt.token) || strings.Contains(e.logs.String(), tt.token)) {
			t.Errorf("a proxy token appears in the gateway's output")
		}
	}
}

// TestIdentityTokenInProxyURL: clients that only know proxy Basic auth put
// the token in the proxy URL (HTTPS_PROXY=http://workload:<jwt>@gateway).
func TestIdentityTokenInProxyURL(t *testing.T) {
	e := startIdentityGateway(t)
	pu, _ := url.Parse("http://" + e.gw.ProxyAddr().String())
	pu.User = url.UserPassword("jobs", e.token(t, "jobs", false))
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: e.roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + apiHost + "/v1/basic-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	if got := e.origin.all(); len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+e.testGateway.token || got[0].Header.Get("Proxy-Authorization") != "" {
		t.Errorf("origin saw %+v", got)
	}
}
