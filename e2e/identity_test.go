package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/testpki"
)

// identityPolicyE2E: billing must present its SPIFFE certificate AND a
// service-account token of its namespace; jobs needs only a token; batch
// is identified by a token the Kubernetes TokenReview API accepts.
const identityPolicyE2E = `
workloads:
  billing:
    spiffe: spiffe://e2e.test/ns/billing/sa/api
    namespace: billing
    require: [mtls, jwt]
  web:
    spiffe: spiffe://e2e.test/ns/web/sa/app
    namespace: web
    require: [mtls, jwt]
  jobs:
    namespace: jobs
    require: [jwt]
  batch:
    namespace: batch
    require: [kubernetes]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - {name: billing-api, from: billing, to: api, inject: {credential: api-token, as: bearer}}
  - {name: jobs-api, from: jobs, to: api, inject: {credential: api-token, as: bearer}}
  - {name: batch-api, from: batch, to: api, inject: {credential: api-token, as: bearer}}
default: deny
`

// idPKI is the identity material of the identity e2e test.
type idPKI struct {
	dir                                     string
	ca                                      *testpki.Authority
	caFile                                  string // client and listener CA (PEM)
	listenerCert, listenerKey               string // the TLS listener's (127.0.0.1)
	signer, forger                          jose.Signer
	jwksFile                                string
	reviewURL, reviewCAFile, gatewaySAToken string
}

func newIDPKI(t *testing.T) *idPKI {
	t.Helper()
	p := &idPKI{dir: t.TempDir()}
	var err error
	if p.ca, err = testpki.NewAuthority("e2e identity CA"); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "id-ca.pem", p.ca.CertPEM)
	listener, err := p.ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p.listenerCert, p.listenerKey = p.writePair(t, "listener", listener)

	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: sk, KeyID: "e2e"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	p.forger, _ = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: fk, KeyID: "e2e"}}, (&jose.SignerOptions{}).WithType("JWT"))
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &sk.PublicKey, KeyID: "e2e", Algorithm: "ES256", Use: "sig"}}})
	p.jwksFile = p.write(t, "jwks.json", jwks)
	return p
}

func (p *idPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *idPKI) writePair(t *testing.T, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := testpki.PEM(c)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", certPEM), p.write(t, name+"-key.pem", keyPEM)
}

// clientCert writes a client certificate with a SPIFFE ID.
func (p *idPKI) clientCert(t *testing.T, name, spiffeID string) (certFile, keyFile string) {
	t.Helper()
	c, err := p.ca.ClientLeaf(name, spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	return p.writePair(t, name, c)
}

// token is a Kubernetes-style projected service-account token.
func (p *idPKI) token(t *testing.T, ns string, forged bool) string {
	t.Helper()
	s := p.signer
	if forged {
		s = p.forger
	}
	tok, err := jwt.Signed(s).Claims(map[string]any{
		"iss": "https://kubernetes.e2e.test", "aud": []string{"credgate"}, "sub": "system:serviceaccount:" + ns + ":api",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": "api", "uid": "1"}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// liveBatchToken is the token the test TokenReview endpoint
// authenticates as service account batch/runner: a projected
// service-account token's shape, with an exp (in 2100), which the
// kubernetes factor requires.
const liveBatchToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YmF0Y2g6cnVubmVyIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl"

// startTokenReview emulates the Kubernetes TokenReview endpoint: token
// liveBatchToken is a service account of namespace batch; every other
// token is unauthenticated (deleted pod, revoked). It checks the
// gateway's own bearer token and the audience.
func (p *idPKI) startTokenReview(t *testing.T) {
	t.Helper()
	p.gatewaySAToken = "gateway-sa-" + randomToken(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Header.Get("Authorization") != "Bearer "+p.gatewaySAToken {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		var tr struct {
			Spec struct {
				Token     string   `json:"token"`
				Audiences []string `json:"audiences"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&tr)
		status := map[string]any{"authenticated": false, "error": "token has been invalidated"}
		if tr.Spec.Token == liveBatchToken {
			status = map[string]any{"authenticated": true, "audiences": tr.Spec.Audiences, "user": map[string]any{
				"username": "system:serviceaccount:batch:runner", "uid": "2",
				"extra": map[string]any{"authentication.kubernetes.io/pod-name": []string{"runner-1"}}}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
	}))
	t.Cleanup(srv.Close)
	p.reviewURL = srv.URL
	p.reviewCAFile = p.write(t, "k8s-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

func (p *idPKI) config() string {
	sa := filepath.Join(p.dir, "gateway-sa-token")
	_ = os.WriteFile(sa, []byte(p.gatewaySAToken), 0o600)
	return fmt.Sprintf(`tls_listen: 127.0.0.1:0
tls:
  cert: %q
  key: %q
  client_ca: %q
identity:
  jwt:
    issuers:
      - issuer: https://kubernetes.e2e.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: %q
  kubernetes:
    api_server: %q
    ca_file: %q
    token_file: %q
    audiences: [credgate]
`, p.listenerCert, p.listenerKey, p.caFile, p.jwksFile, p.reviewURL, p.reviewCAFile, sa)
}

// TestIdentityFactors: workloads identified by an mTLS certificate on the
// HTTPS proxy listener plus a token, by a token in the proxy URL, and by
// a token the TokenReview API accepts; conflicting, forged and revoked
// factors are refused; `credgate explain` verifies the same factors.
func TestIdentityFactors(t *testing.T) {
	t.Parallel()
	p := newIDPKI(t)
	p.startTokenReview(t)
	e := startEnv(t, envOptions{Policy: identityPolicyE2E, ExtraConfig: p.config()})
	billingCert, billingKey := p.clientCert(t, "billing", "spiffe://e2e.test/ns/billing/sa/api")
	billingToken, webToken := p.token(t, "billing", false), p.token(t, "web", false)
	e.secrets = append(e.secrets, billingToken, webToken)

	// curl over the HTTPS proxy listener: client certificate + token.
	curlTLS := func(t *testing.T, path, token string) (status int, connect int, stderr string) {
		t.Helper()
		args := []string{"-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code} %{http_connect}",
			"--proxy", "https://" + e.tlsProxyAddr, "--proxy-cacert", p.caFile,
			"--proxy-cert", billingCert, "--proxy-key", billingKey,
			"--proxy-header", "Proxy-Authorization: Bearer " + token,
			"--cacert", gwCACert, "https://" + apiHost + path}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "curl", args...)
		cmd.Env = clientEnv("")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		fmt.Sscanf(out.String(), "%d %d", &status, &connect)
		return status, connect, errb.String()
	}
	t.Run("curl-mtls-and-token", func(t *testing.T) {
		if status, _, stderr := curlTLS(t, "/v1/two-factors", billingToken); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, stderr)
		}
		if got := e.origin.one(t, "/v1/two-factors").Header.Get("Authorization"); got != "Bearer "+e.token {
			t.Errorf("credential not injected for billing")
		}
	})
	t.Run("curl-conflicting-token", func(t *testing.T) {
		if status, connect, _ := curlTLS(t, "/v1/conflict", webToken); status == http.StatusOK || connect != http.StatusForbidden {
			t.Errorf("certificate of billing with a token of web: status %d, CONNECT %d; want the CONNECT refused with 403", status, connect)
		}
	})
	t.Run("curl-forged-token", func(t *testing.T) {
		if status, connect, _ := curlTLS(t, "/v1/forged", p.token(t, "billing", true)); status == http.StatusOK || connect != http.StatusForbidden {
			t.Errorf("forged token: status %d, CONNECT %d; want 403", status, connect)
		}
	})

	// Token as the proxy URL's password, for clients that only know proxy
	// Basic auth: HTTPS_PROXY=http://jobs:<jwt>@gateway.
	jobsToken := p.token(t, "jobs", false)
	e.secrets = append(e.secrets, jobsToken)
	for _, c := range []client{goClient{}, pythonClient{}, curlClient{}} {
		t.Run("token-in-proxy-url-"+c.Name(), func(t *testing.T) {
			path := "/v1/token-url-" + c.Name()
			r := c.Do(t, e, clientRequest{URL: "https://" + apiHost + path, ProxyUserinfo: "jobs:" + jobsToken})
			if r.Err != "" || r.Status != http.StatusOK {
				t.Fatalf("status %d err %s", r.Status, r.Err)
			}
			if e.origin.one(t, path).Header.Get("Authorization") != "Bearer "+e.token {
				t.Errorf("credential not injected for jobs")
			}
		})
	}

	// Kubernetes TokenReview: accepted while the API server says so; a
	// revoked token (pod deleted) is refused.
	t.Run("tokenreview", func(t *testing.T) {
		r := goClient{}.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/reviewed", ProxyUserinfo: "batch:" + liveBatchToken})
		if r.Err != "" || r.Status != http.StatusOK {
			t.Fatalf("live token: status %d err %s", r.Status, r.Err)
		}
		r = goClient{}.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/revoked", ProxyUserinfo: "batch:revoked-batch-token"})
		if r.Err == "" {
			t.Errorf("revoked token: status %d, want the CONNECT refused", r.Status)
		}
	})

	// The audit lines name the workload and the factors, never a token.
	waitFor(t, 5*time.Second, "audit lines with factors", func() error {
		s := e.stdout.String()
		for _, want := range []string{`"workload":"billing","factors":["source","mtls","jwt"]`, `"code":"factor_conflict"`,
			`"code":"identity_invalid"`, `"workload":"batch","factors":["source","kubernetes"]`} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("no audit line with %s", want)
			}
		}
		return nil
	})

	// explain verifies the same factors from the config.
	tokFile := filepath.Join(p.dir, "billing.token")
	_ = os.WriteFile(tokFile, []byte(billingToken), 0o600)
	out, code := runCLI(t, 30*time.Second, nil, "explain", "-c", e.configPath, "--cert", billingCert, "--token-file", tokFile, "GET", "https://"+apiHost+"/v1/x")
	if code != 0 || !strings.Contains(out, "billing (verified: source=127.0.0.1, mtls=spiffe://e2e.test/ns/billing/sa/api") || !strings.Contains(out, "billing-api") {
		t.Errorf("explain with certificate and token: exit %d\n%s", code, out)
	}
	if strings.Contains(out, billingToken) {
		t.Errorf("explain printed the token")
	}
	webFile := filepath.Join(p.dir, "web.token")
	_ = os.WriteFile(webFile, []byte(webToken), 0o600)
	out, code = runCLI(t, 30*time.Second, nil, "explain", "-c", e.configPath, "--cert", billingCert, "--token-file", webFile, "GET", "https://"+apiHost+"/v1/x")
	if code != 3 || !strings.Contains(out, "factor_conflict") {
		t.Errorf("explain with conflicting factors: exit %d, want 3 and factor_conflict\n%s", code, out)
	}
}
