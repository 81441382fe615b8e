package identity

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(c *fakeClock) options {
	return options{log: discardLogger(), now: c.Now}
}

// newTestJWT builds a jwt verifier from cfg with defaults and the clock.
func newTestJWT(t *testing.T, c *fakeClock, cfg JWTConfig) *jwtVerifier {
	t.Helper()
	full := Config{JWT: cfg}.WithDefaults()
	if err := full.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := newJWTVerifier(context.Background(), full.JWT, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func bearer(tok string) Evidence { return Evidence{ProxyAuthorization: "Bearer " + tok} }

type k8sClaim struct {
	K8s map[string]any `json:"kubernetes.io"`
}

func k8sClaims(ns, sa, pod string) k8sClaim {
	return k8sClaim{K8s: map[string]any{
		"namespace":      ns,
		"serviceaccount": map[string]string{"name": sa, "uid": "u1"},
		"pod":            map[string]string{"name": pod, "uid": "p1"},
	}}
}

// noneToken builds an unsigned token (alg none) by hand: go-jose refuses
// to make one.
func noneToken(t testing.TB, claims any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// hmacWithPublicKey signs claims with HS256 using the PEM of an RSA
// public key as the secret: the classic algorithm-confusion forgery.
func hmacWithPublicKey(t *testing.T, k signingKey, claims ...any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	forged := signingKey{kid: k.kid, alg: jose.HS256}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", forged.kid))
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(s)
	for _, c := range claims {
		b = b.Claims(c)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWTVerify(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	k8sKey := newRSAKey(t, "k8s-1")
	other := newRSAKey(t, "k8s-1") // same kid, different key
	spiffeKey := newECKey(t, "spire-1")
	ghKey := newRSAKey(t, "gh-1")
	oidcKey := newECKey(t, "idp-1")
	const (
		k8sIss = "https://kubernetes.default.svc.cluster.local"
		ghIss  = "https://token.actions.githubusercontent.com"
		idpIss = "https://idp.example.org"
	)
	cfg := JWTConfig{Issuers: []IssuerConfig{
		{Issuer: k8sIss, Profile: ProfileKubernetes, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "k8s.json", jwks(t, k8sKey))},
		{Profile: ProfileSPIFFE, TrustDomain: "prod.example.org", Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "spire.json", jwks(t, spiffeKey))},
		{Issuer: ghIss, Profile: ProfileGitHubActions, Audiences: []string{"https://github.com/example"}, JWKSFile: writeFile(t, dir, "gh.json", jwks(t, ghKey))},
		{Issuer: idpIss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "idp.json", jwks(t, oidcKey)), Claims: map[string]string{"team": "team", "tier": "tier"}},
	}}
	v := newTestJWT(t, clock, cfg)

	k8sStd := std(k8sIss, "system:serviceaccount:billing:api", "credgate")
	expired := k8sStd
	expired.Expiry = jwt.NewNumericDate(t0.Add(-time.Minute))
	expired.IssuedAt = jwt.NewNumericDate(t0.Add(-time.Hour))
	expired.NotBefore = nil
	withinSkew := k8sStd
	withinSkew.Expiry = jwt.NewNumericDate(t0.Add(-10 * time.Second))
	future := k8sStd
	future.NotBefore = jwt.NewNumericDate(t0.Add(5 * time.Minute))
	issuedFuture := k8sStd
	issuedFuture.IssuedAt = jwt.NewNumericDate(t0.Add(5 * time.Minute))
	noExp := k8sStd
	noExp.Expiry = nil
	wrongAud := std(k8sIss, "system:serviceaccount:billing:api", "vault")
	ghClaims := map[string]any{"repository": "example/app", "repository_owner": "example", "ref": "refs/heads/main",
		"workflow": "deploy", "environment": "prod", "job_workflow_ref": "example/app/.github/workflows/deploy.yml@refs/heads/main"}

	tests := []struct {
		name      string
		tok       string
		want      *Factor
		wantErr   error  // nil: no error
		wantInMsg string // part of the error message
	}{
		{name: "kubernetes", tok: k8sKey.sign(t, k8sStd, k8sClaims("billing", "api", "api-7f9")),
			want: &Factor{Kind: KindJWT, Subject: "system:serviceaccount:billing:api", Expires: t0.Add(10 * time.Minute),
				Attributes: map[string]string{"iss": k8sIss, "sub": "system:serviceaccount:billing:api", "namespace": "billing", "service_account": "api", "pod": "api-7f9"}}},
		{name: "spiffe JWT-SVID without iss", tok: spiffeKey.sign(t, std("", "spiffe://prod.example.org/ns/billing/sa/api", "credgate")),
			want: &Factor{Kind: KindJWT, Subject: "spiffe://prod.example.org/ns/billing/sa/api", Expires: t0.Add(10 * time.Minute),
				Attributes: map[string]string{"iss": "", "sub": "spiffe://prod.example.org/ns/billing/sa/api", "spiffe_id": "spiffe://prod.example.org/ns/billing/sa/api", "trust_domain": "prod.example.org", "path": "/ns/billing/sa/api"}}},
		{name: "github actions", tok: ghKey.sign(t, std(ghIss, "repo:example/app:environment:prod", "https://github.com/example"), ghClaims),
			want: &Factor{Kind: KindJWT, Subject: "repo:example/app:environment:prod", Expires: t0.Add(10 * time.Minute),
				Attributes: map[string]string{"iss": ghIss, "sub": "repo:example/app:environment:prod", "repository": "example/app", "repository_owner": "example",
					"ref": "refs/heads/main", "workflow": "deploy", "environment": "prod", "job_workflow_ref": "example/app/.github/workflows/deploy.yml@refs/heads/main"}}},
		{name: "generic oidc with claim map", tok: oidcKey.sign(t, std(idpIss, "svc-42", "credgate"), map[string]any{"team": "payments", "tier": 1, "groups": []string{"a"}}),
			want: &Factor{Kind: KindJWT, Subject: "svc-42", Expires: t0.Add(10 * time.Minute),
				Attributes: map[string]string{"iss": idpIss, "sub": "svc-42", "team": "payments", "tier": "1"}}},
		{name: "exp within clock skew", tok: k8sKey.sign(t, withinSkew, k8sClaims("billing", "api", "p")),
			want: &Factor{Kind: KindJWT, Subject: "system:serviceaccount:billing:api", Expires: t0.Add(-10 * time.Second),
				Attributes: map[string]string{"iss": k8sIss, "sub": "system:serviceaccount:billing:api", "namespace": "billing", "service_account": "api", "pod": "p"}}},
		{name: "issuer nobody configured is not this verifier's", tok: k8sKey.sign(t, std("https://evil.example", "x", "credgate"))},
		{name: "not a JWT is not this verifier's", tok: "opaque-token-value"},

		{name: "wrong key", tok: other.sign(t, k8sStd, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "signature does not verify"},
		{name: "alg none", tok: noneToken(t, map[string]any{"iss": k8sIss, "sub": "system:serviceaccount:billing:api", "aud": "credgate", "exp": t0.Add(time.Hour).Unix()}), wantErr: ErrInvalid, wantInMsg: "allowed algorithm"},
		{name: "HS256 with the public key as secret", tok: hmacWithPublicKey(t, k8sKey, k8sStd, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "allowed algorithm"},
		{name: "expired", tok: k8sKey.sign(t, expired, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "expired"},
		{name: "not valid yet", tok: k8sKey.sign(t, future, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "not valid yet"},
		{name: "issued in the future", tok: k8sKey.sign(t, issuedFuture, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "issued in the future"},
		{name: "no exp", tok: k8sKey.sign(t, noExp, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "no exp"},
		{name: "wrong audience", tok: k8sKey.sign(t, wrongAud, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "audience"},
		{name: "unknown kid", tok: newRSAKey(t, "k8s-9").sign(t, k8sStd, k8sClaims("billing", "api", "p")), wantErr: ErrInvalid, wantInMsg: "no RS256 key with key id"},
		{name: "kubernetes token whose sub disagrees with its claims", tok: k8sKey.sign(t, k8sStd, k8sClaims("web", "api", "p")), wantErr: ErrInvalid, wantInMsg: "does not name the service account"},
		{name: "kubernetes profile without kubernetes.io", tok: k8sKey.sign(t, k8sStd), wantErr: ErrInvalid, wantInMsg: "not a Kubernetes service-account token"},
		{name: "JWT-SVID of another trust domain", tok: spiffeKey.sign(t, std("", "spiffe://prod.example.org.evil/x", "credgate")), wantErr: nil},
		{name: "JWT-SVID with a non-SPIFFE subject", tok: spiffeKey.sign(t, std("", "spiffe://prod.example.org/", "credgate")), wantErr: ErrInvalid, wantInMsg: "not a SPIFFE ID"},
		{name: "github token without repository", tok: ghKey.sign(t, std(ghIss, "x", "https://github.com/example")), wantErr: ErrInvalid, wantInMsg: "no repository claim"},
		{name: "oversized token", tok: k8sKey.sign(t, k8sStd, k8sClaims("billing", "api", strings.Repeat("p", DefaultMaxTokenBytes))), wantErr: ErrInvalid, wantInMsg: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := v.Verify(context.Background(), bearer(tt.tok))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if f != nil {
					// The factor keeps the verified token for token
					// exchange; compare the rest.
					if f.Token.Reveal() != tt.tok {
						t.Errorf("the factor does not carry the verified token")
					}
					g := *f
					g.Token = Token{}
					f = &g
				}
				if diff := cmp.Diff(tt.want, f); diff != "" {
					t.Errorf("factor (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantInMsg)
			}
			assertNoSecret(t, err.Error(), tt.tok)
		})
	}
}

// assertNoSecret fails if msg contains the token or any of its parts.
func assertNoSecret(t *testing.T, msg, tok string) {
	t.Helper()
	for _, part := range append(strings.Split(tok, "."), tok) {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Errorf("message contains (part of) the token: %q", msg)
		}
	}
}

func TestJWTBasicAuthAndCache(t *testing.T) {
	clock := newFakeClock()
	key := newRSAKey(t, "k1")
	const iss = "https://issuer.example"
	jwksFile := writeFile(t, t.TempDir(), "jwks.json", jwks(t, key))
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: jwksFile}}})
	tok := key.sign(t, std(iss, "svc", "credgate"))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("workload:"+tok))
	f, err := v.Verify(context.Background(), Evidence{ProxyAuthorization: basic})
	if err != nil || f == nil || f.Subject != "svc" {
		t.Fatalf("Basic with token as password: factor %+v, error %v", f, err)
	}
	if n := len(v.cache.m); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	for k := range v.cache.m {
		if strings.Contains(string(k[:]), tok) {
			t.Fatal("cache key holds the token")
		}
	}
	// The cached factor is served while its key is in the set (once the
	// key is gone it is not: TestCachedTokenNeedsItsKey)...
	if f2, err := v.Verify(context.Background(), bearer(tok)); err != nil || f2 != f {
		t.Fatalf("cached verify: %v, same factor %v", err, f2 == f)
	}
	// ...and only until the token expires.
	clock.Advance(11 * time.Minute)
	if _, err := v.Verify(context.Background(), bearer(tok)); err == nil {
		t.Fatal("expired cached token still verified")
	}
}

// TestJWKSRotation: an issuer that adds a key and then signs with it
// causes no failure: the unknown kid triggers one refetch. A flood of
// unknown kids causes at most one fetch per MinRefetchInterval, and
// concurrent demands share one fetch.
func TestJWKSRotation(t *testing.T) {
	clock := newFakeClock()
	k1, k2 := newRSAKey(t, "key-1"), newECKey(t, "key-2")
	srv := newOIDCServer(t, jwks(t, k1))
	ic := srv.issuerConfig(ProfileOIDC, "credgate")
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{ic}})
	if got := srv.jwksHits.Load(); got != 1 {
		t.Fatalf("initial fetches = %d, want 1", got)
	}
	verify := func(k signingKey, sub string) error {
		_, err := v.Verify(context.Background(), bearer(k.sign(t, std(ic.Issuer, sub, "credgate"))))
		return err
	}
	if err := verify(k1, "a"); err != nil {
		t.Fatalf("token of key-1: %v", err)
	}
	// Rotation: the issuer publishes key-2 and signs with it at once.
	clock.Advance(DefaultJWKSMinRefetchInterval)
	srv.setKeys(jwks(t, k1, k2))
	if err := verify(k2, "b"); err != nil {
		t.Fatalf("token of the rotated-in key-2: %v", err)
	}
	if err := verify(k1, "c"); err != nil {
		t.Fatalf("token of key-1 after rotation: %v", err)
	}
	if got := srv.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches after rotation = %d, want 2", got)
	}
	// A storm of forged key ids within the interval: no fetch at all.
	for i := range 20 {
		err := verify(newECKey(t, "forged-"+string(rune('a'+i))), "d")
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("forged kid: error %v, want ErrInvalid", err)
		}
	}
	if got := srv.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches after a storm of unknown kids = %d, want 2", got)
	}
	// After the interval, concurrent unknown kids share one fetch.
	clock.Advance(DefaultJWKSMinRefetchInterval)
	srv.block = make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = verify(newECKey(t, "concurrent-"+string(rune('a'+i))), "e")
		}()
	}
	waitFor(t, "the refetch to start", func() bool { return srv.jwksHits.Load() == 3 })
	close(srv.block)
	wg.Wait()
	srv.block = nil
	if got := srv.jwksHits.Load(); got != 3 {
		t.Fatalf("fetches after concurrent unknown kids = %d, want 3", got)
	}
}

// TestJWKSFileReload: a rotated key set file is picked up on an unknown
// kid, without waiting for the reload interval.
func TestJWKSFileReload(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	k1, k2 := newRSAKey(t, "f1"), newRSAKey(t, "f2")
	path := writeFile(t, dir, "jwks.json", jwks(t, k1))
	const iss = "https://file.example"
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"a"}, JWKSFile: path}}})
	writeFile(t, dir, "jwks.json", jwks(t, k1, k2))
	if _, err := v.Verify(context.Background(), bearer(k2.sign(t, std(iss, "s", "a")))); err != nil {
		t.Fatalf("token of a key added to the file: %v", err)
	}
	// A broken file keeps the last good keys.
	writeFile(t, dir, "jwks.json", []byte("{not json"))
	clock.Advance(time.Minute)
	if _, err := v.Verify(context.Background(), bearer(k1.sign(t, std(iss, "s2", "a")))); err != nil {
		t.Fatalf("token after a broken file: %v", err)
	}
}

// TestJWKSUnavailable: with no keys ever fetched, a token fails with
// ErrUnavailable, not ErrInvalid.
func TestJWKSUnavailable(t *testing.T) {
	clock := newFakeClock()
	srv := newOIDCServer(t, []byte(`{"keys":[]}`))
	ic := srv.issuerConfig(ProfileOIDC, "credgate")
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{ic}})
	_, err := v.Verify(context.Background(), bearer(newRSAKey(t, "k").sign(t, std(ic.Issuer, "s", "credgate"))))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
}

// TestDiscoveryIssuerMismatch: a discovery document naming another issuer
// is not trusted.
func TestDiscoveryIssuerMismatch(t *testing.T) {
	clock := newFakeClock()
	k := newRSAKey(t, "k")
	srv := newOIDCServer(t, jwks(t, k))
	srv.issuerName = "https://someone-else.example"
	ic := srv.issuerConfig(ProfileOIDC, "credgate")
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{ic}})
	_, err := v.Verify(context.Background(), bearer(k.sign(t, std(ic.Issuer, "s", "credgate"))))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "must be equal") {
		t.Fatalf("error %v, want ErrUnavailable naming the issuer mismatch", err)
	}
	if srv.jwksHits.Load() != 0 {
		t.Fatal("the JWKS of a mismatched discovery document was fetched")
	}
}

func TestParseJWKSSkipsSymmetricKeys(t *testing.T) {
	rk := newRSAKey(t, "r")
	priv := jose.JSONWebKey{Key: rk.key.(*rsa.PrivateKey), KeyID: "priv"}
	sym := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"}
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{sym, priv}})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KeyID != "priv" || !keys[0].IsPublic() {
		t.Fatalf("keys = %+v, want only the public half of priv", keys)
	}
	if _, err := parseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)); err == nil {
		t.Fatal("a set of only symmetric keys was accepted")
	}
}

func TestProxyToken(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		header  string
		want    string
		wantErr error
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", nil},
		{"bearer   abc.def.ghi  ", "abc.def.ghi", nil},
		{"Basic " + b64("wl:abc.def.ghi"), "abc.def.ghi", nil},
		{"Basic " + b64(":abc.def.ghi"), "abc.def.ghi", nil},
		{"", "", errNoToken},
		{"Basic " + b64("no-colon"), "", ErrInvalid},
		{"Basic !!!", "", ErrInvalid},
		{"Basic " + b64("wl:"), "", ErrInvalid},
		{"Digest x", "", ErrInvalid},
		{"Bearer", "", ErrInvalid},
		{"Bearer " + strings.Repeat("a", 100), "", ErrInvalid},
	}
	for _, tt := range tests {
		got, err := proxyToken(tt.header, 64)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("proxyToken(%.20q) error = %v, want %v", tt.header, err, tt.wantErr)
		}
		if got != tt.want {
			t.Errorf("proxyToken(%.20q) = %q, want %q", tt.header, got, tt.want)
		}
		if err != nil && len(tt.header) > 12 && strings.Contains(err.Error(), tt.header[7:]) {
			t.Errorf("error %q contains the credential", err)
		}
	}
	// The token in the user name (http://<jwt>@proxy) is refused with
	// the fix, not as an empty token, and the error holds no piece of it.
	_, err := proxyToken("Basic "+b64("abc.def.ghi:"), 64)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "put the token in the password") || strings.Contains(err.Error(), "abc") {
		t.Errorf("the token in the user name: %v", err)
	}
}

// FuzzVerifyToken feeds arbitrary Proxy-Authorization values to the jwt
// verifier: it must never panic, and anything it rejects wraps ErrInvalid.
func FuzzVerifyToken(f *testing.F) {
	t := f
	key := newRSAKey(t, "fz")
	dir := f.TempDir()
	const iss = "https://fuzz.example"
	cfg := Config{JWT: JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"a"}, JWKSFile: writeFile(t, dir, "jwks.json", jwks(t, key))}}}}.WithDefaults()
	v, err := newJWTVerifier(context.Background(), cfg.JWT, options{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: newFakeClock().Now})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	good := key.sign(t, std(iss, "s", "a"))
	f.Add("Bearer " + good)
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+good)))
	f.Add("Bearer " + noneToken(t, map[string]any{"iss": iss}))
	f.Add("Bearer e30.e30.")
	f.Add("Bearer ..")
	f.Fuzz(func(t *testing.T, header string) {
		fac, err := v.Verify(context.Background(), Evidence{ProxyAuthorization: header})
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		if err == nil && fac != nil && fac.Attributes[AttrIssuer] != iss {
			t.Fatalf("factor of a foreign issuer: %+v", fac)
		}
	})
}

// TestDiscoveryBearerTokenStaysOnItsOrigin: bearer_token_file goes to the
// discovery document's origin, and to its jwks_uri only on that same
// origin; a document naming another host does not get the token sent
// there.
func TestDiscoveryBearerTokenStaysOnItsOrigin(t *testing.T) {
	k := newRSAKey(t, "k")
	tokenFile := writeFile(t, t.TempDir(), "sa-token", []byte("gateway-sa-token-value"))
	for _, tc := range []struct {
		name      string
		otherHost bool
		wantAuth  string
	}{
		{"same-origin", false, "Bearer gateway-sa-token-value"},
		{"other-origin", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disc := newOIDCServer(t, jwks(t, k))
			keysAt := disc
			if tc.otherHost {
				keysAt = newOIDCServer(t, jwks(t, k))
				disc.jwksBase = keysAt.srv.URL
			}
			ic := disc.issuerConfig(ProfileOIDC, "credgate")
			ic.BearerTokenFile = tokenFile
			v := newTestJWT(t, newFakeClock(), JWTConfig{Issuers: []IssuerConfig{ic}})
			if _, err := v.Verify(context.Background(), bearer(k.sign(t, std(ic.Issuer, "s", "credgate")))); err != nil {
				t.Fatal(err)
			}
			got := keysAt.jwksAuth.Load()
			if got == nil || *got != tc.wantAuth {
				t.Errorf("JWKS fetch Authorization = %v, want %q", got, tc.wantAuth)
			}
		})
	}
}
