package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/api/option"
	storage "google.golang.org/api/storage/v1"

	"github.com/credgate/credgate/internal/googletest"
)

const (
	runHost     = "renderer-abc123-ew.a.run.app"
	runAudience = "https://" + runHost
	wifPool     = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/workloads/providers/cluster-oidc"
	wifIssuer   = "https://workloads.e2e.test"
)

const googleFederationPolicy = `
workloads:
  billing:
    claims: {sub: billing-api}
    require: [jwt]
  local:
    cidrs: [127.0.0.1/32]
destinations:
  renderer:
    hosts: [` + runHost + `]
    allow_private: true
  storage:
    hosts: [storage.googleapis.com]
    allow_private: true
credentials:
  sa-key:
    provider: static
    file: KEY_FILE
  renderer-id:
    provider: google
    key: {credential: sa-key}
    mode: id_token
    target_audience: ` + runAudience + `
    ca_cert: CA_FILE
  billing-gcs:
    provider: google
    workload_identity:
      audience: ` + wifPool + `
      subject_token: {factor: jwt}
      service_account: SA_EMAIL
      sts_url: GOOGLE_URL/v1/token
      iam_credentials_url: GOOGLE_URL
    scopes: [https://www.googleapis.com/auth/cloud-platform]
    ca_cert: CA_FILE
rules:
  - {name: billing-list, from: billing, to: storage, methods: [GET], paths: ["/storage/v1/b/billing-data/*"], inject: {credential: billing-gcs, as: bearer}}
  - {name: render, from: local, to: renderer, methods: [POST], paths: [/render], inject: {credential: renderer-id, as: bearer}}
default: deny
`

// cloudRun is a Cloud Run-style origin that requires a Google-signed ID
// token: it verifies the bearer token's signature with the key set Google
// serves (fetched from the fake Google's JWKS URL), its issuer, expiry
// and that its aud is the service's own URL.
type cloudRun struct {
	srv    *httptest.Server
	google *googletest.Server
	ca     *http.Client

	mu     sync.Mutex
	served []string // emails of verified callers
	tokens []string // the ID tokens it saw, for the leak check
}

func newCloudRun(t *testing.T, g *googletest.Server) *cloudRun {
	t.Helper()
	leaf, err := originCA.Leaf(runHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := loadPool(originCACert)
	if err != nil {
		t.Fatal(err)
	}
	c := &cloudRun{google: g, ca: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	c.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cloudRun) serve(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && raw != "" {
		c.mu.Lock()
		c.tokens = append(c.tokens, raw)
		c.mu.Unlock()
	}
	email, err := c.verify(r.Context(), raw)
	if !ok || err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "Your client does not have permission to the requested URL.", http.StatusUnauthorized)
		return
	}
	c.mu.Lock()
	c.served = append(c.served, email)
	c.mu.Unlock()
	_, _ = io.WriteString(w, "rendered for "+email)
}

func (c *cloudRun) verify(ctx context.Context, raw string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.google.JWKSURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.ca.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var jwks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		return "", err
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", err
	}
	var claims jwt.Claims
	var extra struct {
		Email string `json:"email"`
	}
	if err := tok.Claims(jwks, &claims, &extra); err != nil {
		return "", err
	}
	if err := claims.Validate(jwt.Expected{Issuer: c.google.IDTokenIssuer(), AnyAudience: jwt.Audience{runAudience}, Time: time.Now()}); err != nil {
		return "", err
	}
	return extra.Email, nil
}

func (c *cloudRun) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tokens...)
}

func (c *cloudRun) callers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.served...)
}

// TestGoogleIDTokenAndFederation drives the two keyless-for-the-workload
// modes of the google provider through the gateway: an ID token for a
// Cloud Run-style service (which verifies it with Google's JWKS and its
// own URL as aud), and workload identity federation, where the workload's
// own verified JWT is exchanged at the fake STS (which verifies it with
// the workload issuer's JWKS and the pool's audience) and the federated
// token impersonates a service account whose token Google's Cloud Storage
// Go client then uses.
func TestGoogleIDTokenAndFederation(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := originCA.Leaf("storage.googleapis.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	g := googletest.New(googletest.Options{Certificate: &leaf})
	t.Cleanup(g.Close)

	// The workloads' identity issuer: the gateway verifies their JWTs with
	// its JWKS, and the pool provider trusts the same key set.
	idKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: idKey.Public(), KeyID: "wl-1", Algorithm: "ES256", Use: "sig"}}}
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	jb, _ := json.Marshal(jwks)
	if err := os.WriteFile(jwksFile, jb, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := googletest.Pool{Provider: wifPool, Issuer: wifIssuer, JWKS: jwks}
	g.AddPool(pool)
	acct := googletest.Account{Email: "billing-gcs@acme.iam.gserviceaccount.com", KeyID: "e2e-key", Key: key,
		WorkloadUsers: []string{pool.Principal("billing-api")}}
	g.AddAccount(acct)
	js, err := acct.JSONKey(g.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(keyFile, js, 0o600); err != nil {
		t.Fatal(err)
	}
	run := newCloudRun(t, g)
	reportPeer(t, "google: fake token endpoint, STS, IAM Credentials API and API (internal/googletest) at %s; Cloud Run-style origin at %s", g.URL, run.srv.URL)

	pol := strings.NewReplacer("KEY_FILE", keyFile, "CA_FILE", originCACert, "GOOGLE_URL", g.URL, "SA_EMAIL", acct.Email).Replace(googleFederationPolicy)
	e := startEnv(t, envOptions{
		Policy: pol,
		Resolve: map[string]string{
			"storage.googleapis.com:443": g.Addr,
			runHost + ":443":             run.srv.Listener.Addr().String(),
		},
		ExtraConfig: fmt.Sprintf(`identity:
  jwt:
    issuers:
      - issuer: %s
        profile: oidc
        audiences: [credgate]
        jwks_file: %s
`, wifIssuer, jwksFile),
	})
	// Every token issued (access, federated, ID) must stay out of the
	// gateway's output.
	t.Cleanup(func() {
		e.secrets = append(e.secrets, g.Tokens()...)
		e.secrets = append(e.secrets, g.FederatedTokens()...)
		e.secrets = append(e.secrets, run.seen()...)
	})

	t.Run("ID token for a Cloud Run service", func(t *testing.T) {
		hc := newGoClient(t, e.proxyURL, gwCACert, false)
		for range 2 {
			resp, err := hc.Post(runAudience+"/render", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST /render through the gateway: %d %q", resp.StatusCode, body)
			}
		}
		if got := run.callers(); len(got) != 2 || got[0] != acct.Email {
			t.Errorf("the Cloud Run service verified %v, want two calls as %s", got, acct.Email)
		}
		if n := g.Grants(); n != 1 {
			t.Errorf("%d token requests for two calls, want 1 (the ID token cached)", n)
		} // The origin is not a pushover: without the gateway, no token, or a
		// token that is not a Google ID token for it, is refused.
		for _, auth := range []string{"", "Bearer " + strings.Repeat("x", 40), "Bearer " + run.seen()[0] + "x"} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+run.srv.Listener.Addr().String()+"/render", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := run.ca.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a direct call with Authorization %.20q...: %d, want 401", auth, resp.StatusCode)
			}
		}
	})

	t.Run("workload identity federation with impersonation", func(t *testing.T) {
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: idKey}, (&jose.SignerOptions{}).WithHeader("kid", "wl-1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		// For the gateway (aud credgate) and for the pool provider (its
		// default allowed audience).
		wlToken, err := jwt.Signed(sg).Claims(jwt.Claims{Issuer: wifIssuer, Subject: "billing-api",
			Audience: jwt.Audience{"credgate", "https:" + wifPool}, IssuedAt: jwt.NewNumericDate(now),
			Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		e.secrets = append(e.secrets, wlToken)
		proxy := &url.URL{Scheme: "http", User: url.UserPassword("billing", wlToken), Host: e.proxyAddr}
		hc := newGoClient(t, proxy.String(), gwCACert, false)
		svc, err := storage.NewService(context.Background(), option.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		before := len(g.APICalls())
		for range 2 {
			if _, err := svc.Objects.List("billing-data").Context(t.Context()).Do(); err != nil {
				t.Fatalf("Objects.List through the gateway: %v", err)
			}
		}
		if calls := g.APICalls()[before:]; len(calls) != 2 || calls[0] != acct.Email || calls[1] != acct.Email {
			t.Errorf("the API served %v, want two calls as the impersonated %s", calls, acct.Email)
		}
		if x, i := g.Exchanges(), g.Impersonations(); x != 1 || i != 1 {
			t.Errorf("%d STS exchanges and %d impersonations for two calls, want 1 and 1 (cached per workload)", x, i)
		}
	})
}
