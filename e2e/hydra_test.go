package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/oauth2test"
)

// authServer is the authorization server of TestOAuth2AuthorizationServer:
// Ory Hydra when it can be built here, else the in-repo go-oauth2 server.
type authServer interface {
	tokenURL() string
	// secretClient creates a client_credentials client authenticating
	// with method (client_secret_basic or client_secret_post).
	secretClient(t *testing.T, method, secret string) (id string)
	// keyClient creates a private_key_jwt client with the public key.
	keyClient(t *testing.T, key *rsa.PublicKey, kid string) (id string)
	// bearerClient creates a client (client_secret_basic) allowed the
	// JWT bearer grant, and trusts assertions of issuer for subject,
	// signed with key.
	bearerClient(t *testing.T, secret, issuer, subject string, key *rsa.PublicKey, kid string) (id string)
	introspect(ctx context.Context, token string) (clientID string, active bool)
	// revoke makes token inactive (as a client whose secret is known).
	revoke(t *testing.T, token, clientID, secret string)
}

// hydraBinary returns Ory Hydra v2.3.0, built by scripts/hydra.sh into
// the tools directory. Hydra reads its whole configuration from the
// environment as well, so buildTool's minimal environment matters here.
func hydraBinary(t *testing.T) (string, error) {
	return buildTool(t, "hydra.sh", "hydra", 45*time.Minute)
}

// minimalEnv is PATH, HOME and TMPDIR of the test process, for a peer
// that must not see the rest of its environment.
func minimalEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// hydra is a running `hydra serve all --dev` with an in-memory store.
type hydra struct {
	public, admin string
}

// startHydra runs Hydra on two free ports of 127.0.0.1 and waits until
// its admin API is ready.
func startHydra(t *testing.T, bin string) (*hydra, error) {
	t.Helper()
	pub, adm := freeport.Get(t), freeport.Get(t)
	h := &hydra{public: fmt.Sprintf("http://127.0.0.1:%d", pub), admin: fmt.Sprintf("http://127.0.0.1:%d", adm)}
	sys := make([]byte, 24)
	_, _ = rand.Read(sys)
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	// Hydra reads its whole configuration from the environment as well:
	// whatever the test process carries (make exports VERSION, which
	// Hydra takes for its config schema "version" and exits) must not
	// reach it. Only what a process needs, then Hydra's own settings.
	cmd.Env = append(minimalEnv(),
		"DSN=memory",
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pub),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", adm),
		"URLS_SELF_ISSUER="+h.public+"/",
		"SECRETS_SYSTEM="+hex.EncodeToString(sys),
		"LOG_LEVEL=warn",
	)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hydra: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("hydra output:\n%s", tail(out.String(), 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("hydra exited before it was ready (%v):\n%s", waitErr, tail(out.String(), 20))
		default:
		}
		resp, err := http.Get(h.admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("hydra not ready after 60s (last: %v):\n%s", err, tail(out.String(), 20))
		}
		// Polling with a deadline, like waitFor (which fails the test;
		// here a failure means falling back).
		timer := time.NewTimer(100 * time.Millisecond)
		select {
		case <-timer.C:
		case <-exited:
			timer.Stop()
		}
	}
}

func (h *hydra) tokenURL() string { return h.public + "/oauth2/token" }

func (h *hydra) createClient(t *testing.T, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(h.admin+"/admin/clients", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("hydra: create client: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.ClientID == "" {
		t.Fatalf("hydra: create client: %s %v", resp.Status, err)
	}
	return out.ClientID
}

func (h *hydra) secretClient(t *testing.T, method, secret string) string {
	return h.createClient(t, map[string]any{
		"client_name": "credgate-e2e-" + method, "client_secret": secret,
		"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": method,
		"scope": "read write", "audience": []string{"https://api.saas.test"},
	})
}

func (h *hydra) keyClient(t *testing.T, key *rsa.PublicKey, kid string) string {
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "RS256", Use: "sig"}
	return h.createClient(t, map[string]any{
		"client_name": "credgate-e2e-private-key-jwt", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "RS256",
		"jwks": map[string]any{"keys": []jose.JSONWebKey{jwk}}, "scope": "read write",
	})
}

func (h *hydra) bearerClient(t *testing.T, secret, issuer, subject string, key *rsa.PublicKey, kid string) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "RS256", Use: "sig"}
	b, _ := json.Marshal(map[string]any{
		"issuer": issuer, "subject": subject, "scope": []string{"read"}, "jwk": jwk,
		"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
	resp, err := http.Post(h.admin+"/admin/trust/grants/jwt-bearer/issuers", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("hydra: trust issuer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("hydra: trust issuer: %s", resp.Status)
	}
	return h.createClient(t, map[string]any{
		"client_name": "credgate-e2e-jwt-bearer", "client_secret": secret,
		"grant_types":                []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"token_endpoint_auth_method": "client_secret_basic", "scope": "read",
	})
}

func (h *hydra) introspect(ctx context.Context, tok string) (string, bool) {
	req, _ := http.NewRequestWithContext(ctx, "POST", h.admin+"/admin/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var out struct {
		Active   bool   `json:"active"`
		ClientID string `json:"client_id"`
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil {
		return "", false
	}
	return out.ClientID, out.Active
}

func (h *hydra) revoke(t *testing.T, tok, clientID, secret string) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.public+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("hydra: revoke: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hydra: revoke: %s", resp.Status)
	}
}

// fallbackServer adapts oauth2test to authServer.
type fallbackServer struct{ s *oauth2test.Server }

func (f fallbackServer) tokenURL() string { return f.s.TokenURL() }
func (f fallbackServer) secretClient(t *testing.T, method, secret string) string {
	id := "client-" + method
	f.s.AddSecretClient(id, secret)
	return id
}
func (f fallbackServer) keyClient(t *testing.T, key *rsa.PublicKey, _ string) string {
	f.s.AddKeyClient("client-private-key-jwt", key)
	return "client-private-key-jwt"
}
func (f fallbackServer) bearerClient(t *testing.T, secret, issuer, _ string, key *rsa.PublicKey, _ string) string {
	f.s.TrustIssuer(issuer, key)
	f.s.AddSecretClient("client-jwt-bearer", secret)
	return "client-jwt-bearer"
}
func (f fallbackServer) introspect(ctx context.Context, tok string) (string, bool) {
	info, ok := f.s.Introspect(ctx, tok)
	return info.ClientID, ok
}
func (f fallbackServer) revoke(_ *testing.T, tok, _, _ string) { f.s.Revoke(context.Background(), tok) }

const hydraPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  saas:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  basic-secret: {provider: static, env: CREDGATE_E2E_BASIC_SECRET}
  post-secret: {provider: static, env: CREDGATE_E2E_POST_SECRET}
  client-key: {provider: static, file: KEY_FILE}
  bearer-secret: {provider: static, env: CREDGATE_E2E_BEARER_SECRET}
  bearer:
    provider: oauth2
    grant: jwt_bearer
    token_url: TOKEN_URL
    client_id: BEARER_ID
    client_auth: client_secret_basic
    client_secret: {credential: bearer-secret}
    client_key: {file: KEY_FILE, key_id: e2e-bearer}
    scopes: [read]
    jwt_bearer: {issuer: https://credgate.e2e.test, subject: integration@example.com}
  basic:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: BASIC_ID
    client_secret: {credential: basic-secret}
    scopes: [read]
    audience: AUDIENCE
  post:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: POST_ID
    client_auth: client_secret_post
    client_secret: {credential: post-secret}
    scopes: [write]
  pkjwt:
    provider: oauth2
    token_url: TOKEN_URL
    client_id: PK_ID
    client_auth: private_key_jwt
    client_key: {credential: client-key, key_id: e2e-1}
    scopes: [read]
rules:
  - {name: basic, from: local, to: saas, paths: [/basic/*], inject: {credential: basic, as: bearer}}
  - {name: post, from: local, to: saas, paths: [/post/*], inject: {credential: post, as: bearer}}
  - {name: pkjwt, from: local, to: saas, paths: [/pkjwt/*], inject: {credential: pkjwt, as: bearer}}
  - {name: bearer, from: local, to: saas, paths: [/bearer/*], inject: {credential: bearer, as: bearer}}
default: deny
`

// TestOAuth2AuthorizationServer: client_secret_basic, client_secret_post
// and private_key_jwt clients created through Ory Hydra's admin API, and a
// JWT bearer grant (RFC 7523) from an issuer Hydra was told to trust; curl,
// Go and Python call an origin that accepts a request only if Hydra's
// introspection endpoint says the bearer token is active; a token revoked
// at Hydra is replaced on the 401 and the request retried. Falls back to
// the in-repo go-oauth2 server, saying why, when Hydra cannot be built or
// started here.
func TestOAuth2AuthorizationServer(t *testing.T) {
	t.Parallel()
	var as authServer
	const audience = "https://api.saas.test"
	bin, err := hydraBinary(t)
	if err == nil {
		var h *hydra
		// Two free ports are chosen before Hydra binds them: under a full
		// parallel run another test can take one in between, and Hydra
		// exits. Try again on fresh ports before falling back.
		for attempt := 1; attempt <= 3; attempt++ {
			if h, err = startHydra(t, bin); err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
				break
			}
			t.Logf("hydra start, attempt %d: %v", attempt, err)
		}
		if err == nil {
			as = h
			reportPeer(t, "oauth2: real Ory Hydra v2.3.0 (%s) at %s, admin %s", bin, h.public, h.admin)
		}
	}
	if as == nil {
		s := oauth2test.New(oauth2test.Options{})
		t.Cleanup(s.Close)
		as = fallbackServer{s}
		reportPeer(t, "oauth2: FALLBACK to the go-oauth2 server at %s, because Ory Hydra is not usable here: %v", s.URL, firstLine(err))
		t.Logf("why Hydra is not used: %v", err)
	}

	basicSecret, postSecret := randomToken(t), randomToken(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	keyFile := filepath.Join(t.TempDir(), "client-key.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	basicID := as.secretClient(t, "client_secret_basic", basicSecret)
	postID := as.secretClient(t, "client_secret_post", postSecret)
	pkID := as.keyClient(t, &key.PublicKey, "e2e-1")
	bearerSecret := randomToken(t)
	bearerID := as.bearerClient(t, bearerSecret, "https://credgate.e2e.test", "integration@example.com", &key.PublicKey, "e2e-bearer")

	in := func(ctx context.Context, tok string) (string, bool) { return as.introspect(ctx, tok) }
	o := startAuthOrigin(t, map[string]introspector{"basic": in, "post": in, "pkjwt": in, "bearer": in})
	pol := strings.NewReplacer("TOKEN_URL", as.tokenURL(), "BASIC_ID", basicID, "POST_ID", postID, "PK_ID", pkID, "BEARER_ID", bearerID,
		"KEY_FILE", keyFile, "AUDIENCE", audience).Replace(hydraPolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{otherHost + ":443": o.addr},
		Env: []string{"CREDGATE_E2E_BASIC_SECRET=" + basicSecret, "CREDGATE_E2E_POST_SECRET=" + postSecret,
			"CREDGATE_E2E_BEARER_SECRET=" + bearerSecret},
	})
	e.secrets = append(e.secrets, basicSecret, postSecret, bearerSecret, string(keyPEM[40:100]))
	t.Cleanup(func() { e.secrets = append(e.secrets, o.tokens()...) })

	for _, tc := range []struct {
		path, client string
		c            client
	}{
		{"/basic/curl", basicID, curlClient{}},
		{"/post/python", postID, pythonClient{}},
		{"/pkjwt/go", pkID, goClient{}},
		{"/bearer/go", bearerID, goClient{}},
	} {
		resp := tc.c.Do(t, e, clientRequest{URL: "https://" + otherHost + tc.path})
		if resp.Status != http.StatusOK || resp.Body != "hello "+tc.client {
			t.Errorf("%s via %s: status %d body %q err %s; want the origin to accept a token of %s", tc.path, tc.c.Name(), resp.Status, resp.Body, resp.Err, tc.client)
		}
	}

	// Revoked at the authorization server: the 401 drops the cached
	// token and the GET is retried once with a new one.
	seen := o.byPath("/basic/curl")
	if len(seen) != 1 {
		t.Fatalf("origin saw %d requests for /basic/curl", len(seen))
	}
	as.revoke(t, seen[0].Token, basicID, basicSecret)
	if _, active := as.introspect(context.Background(), seen[0].Token); active {
		t.Fatalf("the revoked token is still active")
	}
	resp := goClient{}.Do(t, e, clientRequest{URL: "https://" + otherHost + "/basic/after-revoke"})
	got := o.byPath("/basic/after-revoke")
	if resp.Status != http.StatusOK || len(got) != 2 || got[0].Active || !got[1].Active {
		t.Errorf("after revocation: status %d, %d attempts at the origin; want 200 after the revoked token, then a new one", resp.Status, len(got))
	}
}

func firstLine(err error) string {
	if err == nil {
		return "unknown"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
