package oauth2

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"
)

// load builds an oauth2 provider from YAML settings through the registry
// (strict decoding, Provision, Validate) and hands it inputs.
func load(t *testing.T, settings string, inputs map[string]providers.Provider) *Provider {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(context.Background(), "oauth2", n.Content[0])
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	op := p.(*Provider)
	op.SetInputs(inputs)
	t.Cleanup(func() { _ = op.Cleanup() })
	return op
}

// fixed is an input credential with one field (kept as a Secret, like
// a real provider's, so printing it leaks nothing).
type fixed struct {
	field string
	value providers.Secret
	err   error
}

func input(field, value string) fixed { return fixed{field: field, value: providers.NewSecret(value)} }

func (f fixed) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &providers.Credential{Fields: map[string]providers.Secret{f.field: f.value}}, nil
}

func writeKey(t *testing.T, k crypto.Signer) (path, pemText string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pemText = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	path = filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemText
}

func fetchToken(t *testing.T, p *Provider, req providers.Request) string {
	t.Helper()
	c, err := p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	tok, ok := c.Field(providers.FieldToken)
	if !ok {
		t.Fatal("no token field")
	}
	if c.Expiry.IsZero() {
		t.Error("token has no expiry")
	}
	return tok.Reveal()
}

// TestClientAuthentication: every client authentication method gets a
// token the server says is active, with scopes, audience, resource and
// extra parameters sent, and the secret sent only where it belongs.
func TestClientAuthentication(t *testing.T) {
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	const secret = "s3cret-value-for-basic+post/="
	srv.AddSecretClient("basic-client", secret)
	srv.AddSecretClient("post-client", secret)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv.AddKeyClient("rsa-client", rsaKey.Public())
	srv.AddKeyClient("ec-client", ecKey.Public())
	rsaFile, _ := writeKey(t, rsaKey)
	_, ecPEM := writeKey(t, ecKey)
	inputs := map[string]providers.Provider{
		"client-secret": input(providers.FieldToken, secret),
		"ec-key":        input(providers.FieldPrivateKey, ecPEM),
	}
	common := "token_url: " + srv.TokenURL() + "\nscopes: [read, write]\naudience: https://api.example.com\nresource: [https://api.example.com/v1]\nparams: {tenant: acme}\n"
	tests := []struct {
		name, settings, client string
		basic                  bool
	}{
		{"client_secret_basic", "client_id: basic-client\nclient_secret: {credential: client-secret}\n", "basic-client", true},
		{"client_secret_post", "client_id: post-client\nclient_auth: client_secret_post\nclient_secret: {credential: client-secret}\n", "post-client", false},
		{"client_secret_post inline (development)", "client_id: post-client\nclient_auth: client_secret_post\nclient_secret: {value: \"" + secret + "\"}\n", "post-client", false},
		{"private_key_jwt file RSA", "client_id: rsa-client\nclient_key: {file: " + rsaFile + ", key_id: k1}\n", "rsa-client", false},
		{"private_key_jwt credential EC", "client_id: ec-client\nclient_auth: private_key_jwt\nclient_key: {credential: ec-key}\n", "ec-client", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := load(t, common+tt.settings, inputs)
			before := len(srv.Requests())
			tok := fetchToken(t, p, providers.Request{Credential: "saas"})
			info, ok := srv.Introspect(context.Background(), tok)
			if !ok || info.ClientID != tt.client || info.Scope != "read write" {
				t.Fatalf("introspection: active=%v %+v; want a token of %s with scope read write", ok, info, tt.client)
			}
			reqs := srv.Requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d token requests, want 1", len(reqs))
			}
			f := reqs[0]
			if f.Get("audience") != "https://api.example.com" || f.Get("resource") != "https://api.example.com/v1" || f.Get("tenant") != "acme" {
				t.Errorf("form %v lacks audience, resource or params", keysOf(f))
			}
			if tt.basic && (f.Has("client_secret") || f.Has("client_id")) {
				t.Errorf("client_secret_basic sent the client in the form")
			}
			if strings.Contains(tt.settings, "client_key") && (f.Get("client_assertion_type") != assertionTypeJWT || f.Has("client_secret")) {
				t.Errorf("private_key_jwt: form %v", keysOf(f))
			}
		})
	}
}

func keysOf(v map[string][]string) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

// workloadToken signs a workload JWT as an identity issuer would.
func workloadToken(t *testing.T, key *ecdsa.PrivateKey, iss, sub string) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(sg).Claims(jwt.Claims{Issuer: iss, Subject: sub, Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestTokenExchange: the workload's verified JWT is the subject_token;
// the issued token is for that workload; tokens are cached per workload
// and per subject token.
func TestTokenExchange(t *testing.T) {
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	srv.AddSecretClient("gateway", "exchange-secret")
	idKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv.TrustIssuer("https://k8s.example", idKey.Public())
	p := load(t, "token_url: "+srv.TokenURL()+"\ngrant: token_exchange\nclient_id: gateway\nclient_secret: {credential: s}\naudience: https://saas.example\n",
		map[string]providers.Provider{"s": input(providers.FieldToken, "exchange-secret")})

	wl := func(name, sub string) identity.Workload {
		return identity.Workload{Name: name, Factors: []identity.Factor{
			{Kind: identity.KindSource, Subject: "127.0.0.1"},
			{Kind: identity.KindJWT, Subject: sub, Token: identity.NewToken(workloadToken(t, idKey, "https://k8s.example", sub))},
		}}
	}
	billing, search := wl("billing", "system:serviceaccount:prod:billing"), wl("search", "system:serviceaccount:prod:search")
	for _, w := range []identity.Workload{billing, search} {
		tok := fetchToken(t, p, providers.Request{Credential: "saas", Workload: w})
		info, ok := srv.Introspect(context.Background(), tok)
		if !ok || info.Subject != w.Factors[1].Subject {
			t.Errorf("%s: token for %q (active %v), want one for %s", w.Name, info.Subject, ok, w.Factors[1].Subject)
		}
	}
	last := srv.Requests()[len(srv.Requests())-1]
	if last.Get("grant_type") != grantTypeTokenExchange || last.Get("subject_token_type") != TokenTypeJWT || last.Get("audience") != "https://saas.example" {
		t.Errorf("token exchange form: %v", keysOf(last))
	}
	r1, r2 := providers.Request{Workload: billing}, providers.Request{Workload: search}
	if p.CacheScope(r1) == p.CacheScope(r2) {
		t.Error("two workloads share a cache scope")
	}
	rotated := wl("billing", "system:serviceaccount:prod:billing")
	if p.CacheScope(r1) == p.CacheScope(providers.Request{Workload: rotated}) {
		t.Error("a new subject token of the same workload has the same cache scope")
	}
	if strings.Contains(p.CacheScope(r1), billing.Factors[1].Token.Reveal()) {
		t.Error("the cache scope contains the subject token")
	}

	// No verified token: a clear error, no request.
	n := srv.TokenRequests()
	_, err := p.Fetch(context.Background(), providers.Request{Workload: identity.Workload{Name: "mtls-only"}})
	if err == nil || !strings.Contains(err.Error(), "no verified token") || srv.TokenRequests() != n {
		t.Errorf("without a token: %v (%d requests)", err, srv.TokenRequests()-n)
	}
}

// TestJWTBearer: the gateway signs the assertion; the token is for its
// subject.
func TestJWTBearer(t *testing.T) {
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv.TrustIssuer("svc@project.iam.example", key.Public())
	file, _ := writeKey(t, key)
	p := load(t, "token_url: "+srv.TokenURL()+"\ngrant: jwt_bearer\nclient_key: {file: "+file+"}\njwt_bearer: {issuer: svc@project.iam.example, subject: admin@example.com, claims: {scope: \"https://www.googleapis.com/auth/drive\"}}\n", nil)
	tok := fetchToken(t, p, providers.Request{Credential: "google"})
	if info, ok := srv.Introspect(context.Background(), tok); !ok || info.Subject != "admin@example.com" {
		t.Errorf("token for %q (active %v), want admin@example.com", info.Subject, ok)
	}
	f := srv.Requests()[0]
	if f.Get("grant_type") != grantTypeJWTBearer || f.Has("client_id") {
		t.Errorf("form %v", keysOf(f))
	}
	parsed, err := jwt.ParseSigned(f.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := parsed.Claims(key.Public(), &c); err != nil {
		t.Fatal(err)
	}
	if c["aud"] != srv.TokenURL() || c["scope"] != "https://www.googleapis.com/auth/drive" || c["jti"] == "" {
		t.Errorf("assertion claims %v", c)
	}
}

// TestFailures: 5xx is retried and ends in ErrUnavailable; 4xx is not
// retried and is not "unavailable"; an unreachable endpoint is
// unavailable; an input that cannot be read is reported by name.
func TestFailures(t *testing.T) {
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	srv.AddSecretClient("c", "right-secret")
	base := "token_url: " + srv.TokenURL() + "\nclient_id: c\nclient_secret: {credential: s}\nretries: 2\nretry_backoff: 1ms\n"
	ok := map[string]providers.Provider{"s": input(providers.FieldToken, "right-secret")}

	srv.FailWith(http.StatusInternalServerError)
	p := load(t, base, ok)
	n := srv.TokenRequests()
	_, err := p.Fetch(context.Background(), providers.Request{})
	if !errors.Is(err, providers.ErrUnavailable) || srv.TokenRequests()-n != 3 || !strings.Contains(err.Error(), "answered 500 server_error") {
		t.Errorf("500: %v after %d requests; want ErrUnavailable after 3", err, srv.TokenRequests()-n)
	}
	srv.FailWith(0)
	if tok := fetchToken(t, p, providers.Request{}); tok == "" {
		t.Error("no token after healing")
	}

	wrong := load(t, base, map[string]providers.Provider{"s": input(providers.FieldToken, "wrong-secret")})
	n = srv.TokenRequests()
	_, err = wrong.Fetch(context.Background(), providers.Request{})
	if err == nil || errors.Is(err, providers.ErrUnavailable) || srv.TokenRequests()-n != 1 || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("wrong secret: %v after %d requests; want a plain invalid_client error after 1", err, srv.TokenRequests()-n)
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	unreachable := load(t, strings.Replace(base, srv.TokenURL(), down.URL+"/token", 1), ok)
	if _, err := unreachable.Fetch(context.Background(), providers.Request{}); !errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("unreachable: %v, want ErrUnavailable", err)
	}

	vaultDown := load(t, base, map[string]providers.Provider{"s": fixed{err: fmt.Errorf("vault: sealed: %w", providers.ErrUnavailable)}})
	if _, err := vaultDown.Fetch(context.Background(), providers.Request{}); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), `read credential "s"`) {
		t.Errorf("input down: %v", err)
	}
}

// TestDefaultExpiresIn: an answer without expires_in gets the configured
// lifetime; expires_in is honoured less the margin.
func TestDefaultExpiresIn(t *testing.T) {
	expiresIn := ""
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at","token_type":"bearer"%s}`, expiresIn)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	p := load(t, "token_url: "+srv.URL+"\ndefault_expires_in: 90s\n", nil)
	c, err := p.Fetch(context.Background(), providers.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(c.Expiry); life < 75*time.Second || life > 90*time.Second {
		t.Errorf("lifetime without expires_in %v, want 90s less a 9s margin", life)
	}
	expiresIn = `,"expires_in":2`
	c, err = p.Fetch(context.Background(), providers.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(c.Expiry); life <= time.Second || life > 1800*time.Millisecond {
		t.Errorf("lifetime with expires_in 2 is %v, want about 1.8s", life)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"grant: client_credentials", "set token_url"},
		{"token_url: ftp://x/token", "not an absolute http(s) URL"},
		{"token_url: https://u:p@x/token", "must not carry credentials"},
		{"token_url: https://x/token\ngrant: password", `grant "password"`},
		{"token_url: https://x/token\nclient_auth: client_secret_post\nclient_id: c", "needs client_secret"},
		{"token_url: https://x/token\nclient_auth: private_key_jwt\nclient_id: c", "needs client_key"},
		{"token_url: https://x/token\nclient_secret: {credential: s}", "needs client_id"},
		{"token_url: https://x/token\nclient_id: c\nclient_secret: {credential: s, value: v}", "not both"},
		{"token_url: https://x/token\ngrant: jwt_bearer\nclient_key: {file: k.pem}", "needs jwt_bearer.issuer"},
		{"token_url: https://x/token\ngrant: jwt_bearer\njwt_bearer: {issuer: i, claims: {exp: 1}}\nclient_key: {file: k.pem}", "may not set exp"},
		{"token_url: https://x/token\nparams: {grant_type: password}", "params may not set grant_type"},
		{"token_url: https://x/token\nresource: [relative/path]", "not an absolute URI"},
		{"token_url: https://x/token\nclient_id: c\nclient_key: {file: k.pem, algorithm: HS256}", `algorithm "HS256"`},
		{"token_url: https://x/token\nclient_id: c\nclient_key: {file: k.pem, credential: k}", "set one of file, credential and transit"},
		{"token_url: https://x/token\nunknown_key: 1", "unknown_key"},
	}
	for _, tt := range tests {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tt.settings), &n); err != nil {
			t.Fatal(err)
		}
		_, err := providers.Load(context.Background(), "oauth2", n.Content[0])
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one containing %q", tt.settings, err, tt.want)
		}
	}
}

// TestPrivateKeyJWTVaultTransit: the client assertion is signed by a Vault
// transit key (the in-repo Vault emulator); the key never leaves Vault.
func TestPrivateKeyJWTVaultTransit(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	t.Setenv("CREDGATE_OAUTH2_TEST_VAULT_TOKEN", emu.RootToken)
	if _, err := emu.MountTransit(t.Context(), map[string]string{"oauth2": "ecdsa-p256"}); err != nil {
		t.Fatalf("vault setup: %v", err)
	}
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	srv.AddKeyClient("transit-client", emu.TransitPublicKey("transit", "oauth2"))
	p := load(t, "token_url: "+srv.TokenURL()+"\nclient_id: transit-client\nclient_key:\n  algorithm: ES256\n  transit:\n    key: oauth2\n    server: {address: "+emu.URL+", auth: {method: token, token_env: CREDGATE_OAUTH2_TEST_VAULT_TOKEN}}\n", nil)
	tok := fetchToken(t, p, providers.Request{Credential: "saas"})
	if info, ok := srv.Introspect(t.Context(), tok); !ok || info.ClientID != "transit-client" {
		t.Errorf("introspection: active=%v %+v", ok, info)
	}
}
