package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/syncbuf"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings, one per expected error line
	}{
		{"zero value", "{}", nil},
		{"alg none and HS256", `
jwt:
  issuers:
    - issuer: https://i.example
      audiences: [a]
      jwks_file: k.json
      algorithms: [none, HS256, RS256, XX1]
`, []string{`"none" is never accepted`, `"HS256" is never accepted`, `unknown algorithm "XX1"`}},
		{"issuer problems", `
jwt:
  clock_skew: 1h
  issuers:
    - profile: kubernetes
      jwks_url: http://plain.example/jwks
      jwks_file: k.json
    - issuer: https://i.example
      profile: spiffe
      audiences: [a]
      jwks_file: k.json
    - issuer: https://i.example
      profile: magic
      audiences: [a]
      discovery_url: https://i.example/.well-known/openid-configuration
      claims: {team: namespace, x: sub}
`, []string{
			"identity.jwt.clock_skew: must be between 0 and 5m0s",
			"identity.jwt.issuers[0].issuer: is required",
			"identity.jwt.issuers[0].audiences: is required",
			"identity.jwt.issuers[0].jwks_file: set exactly one of",
			"identity.jwt.issuers[0].jwks_url: \"http://plain.example/jwks\" must use https",
			"identity.jwt.issuers[1].trust_domain: the spiffe profile needs the trust domain",
			`identity.jwt.issuers[2].profile: unknown profile "magic"`,
			`identity.jwt.issuers[2].claims: attribute "namespace" is a Kubernetes service account's`,
			`identity.jwt.issuers[2].claims: attribute "sub" is set by the magic profile itself`,
			`identity.jwt.issuers[2].issuer: "https://i.example" is already configured by jwt.issuers[1]`,
		}},
		// The namespace and service_account selectors stand for a
		// verified Kubernetes service account: before, an OIDC or
		// GitHub Actions issuer's claim mapped onto namespace (a GitLab
		// namespace_path, a group) passed for one.
		{"other profiles' claims onto Kubernetes attributes", `
jwt:
  issuers:
    - issuer: https://idp.example
      audiences: [a]
      jwks_file: k.json
      claims: {ns: namespace, sa: service_account, pod_name: pod, team: team}
    - issuer: https://token.actions.githubusercontent.com
      profile: github-actions
      audiences: [a]
      jwks_file: k.json
      claims: {repository_owner: namespace}
`, []string{
			`identity.jwt.issuers[0].claims: attribute "namespace" is a Kubernetes service account's`,
			`identity.jwt.issuers[0].claims: attribute "pod" is a Kubernetes service account's`,
			`identity.jwt.issuers[0].claims: attribute "service_account" is a Kubernetes service account's`,
			`identity.jwt.issuers[1].claims: attribute "namespace" is a Kubernetes service account's`,
		}},
		{"kubernetes profile claims onto namespace", `
jwt:
  issuers:
    - issuer: https://k8s.example
      profile: kubernetes
      audiences: [a]
      jwks_file: k.json
      claims: {ns: namespace}
`, []string{`attribute "namespace" is set by the kubernetes profile itself`}},
		{"mtls, kubernetes and posture", `
mtls:
  trust_domains: [Bad_Domain]
  bundles:
    - trust_domain: example.org
kubernetes:
  api_server: http://10.0.0.1
posture:
  file: p.json
  url: https://p.example
`, []string{
			"identity.mtls.bundles[0].file: is required",
			`identity.mtls.trust_domains[0]: "Bad_Domain" is not a trust domain name`,
			"identity.kubernetes.api_server: \"http://10.0.0.1\" must use https",
			"identity.kubernetes.audiences: is required",
			"identity.posture: set file or url, not both",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			dec := yaml.NewDecoder(strings.NewReader(tt.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("decode: %v", err)
			}
			err := c.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tt.want), err)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestConfigStrictYAML: the config block decodes strictly, with the
// documented keys, and durations as Go duration strings.
func TestConfigStrictYAML(t *testing.T) {
	src := `
mtls:
  bundles: [{file: /etc/spire/bundle.pem, trust_domain: prod.example.org}]
  trust_domains: [prod.example.org]
  require_spiffe: true
  reload_interval: 30s
jwt:
  clock_skew: 1m
  max_token_bytes: 8192
  cache_size: 100
  issuers:
    - issuer: https://kubernetes.default.svc.cluster.local
      profile: kubernetes
      audiences: [credgate]
      discovery_url: https://kubernetes.default.svc.cluster.local/.well-known/openid-configuration
      ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
      bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token
      algorithms: [RS256]
      refresh_interval: 30m
      min_refetch_interval: 5s
      fetch_timeout: 3s
kubernetes:
  audiences: [credgate]
  cache_ttl: 5s
posture:
  url: https://posture.example/v1/workloads
  interval: 1m
  max_age: 10m
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := c.WithDefaults()
	if d.Kubernetes.APIServer != DefaultKubernetesAPIServer || d.Kubernetes.TokenFile != DefaultKubernetesTokenFile || d.Kubernetes.CacheTTL != 5*time.Second {
		t.Errorf("kubernetes defaults: %+v", d.Kubernetes)
	}
	if d.JWT.Issuers[0].MinRefetchInterval != 5*time.Second || d.MTLS.ReloadInterval != 30*time.Second {
		t.Errorf("durations not decoded: %+v %+v", d.JWT.Issuers[0], d.MTLS)
	}
	if c.Kubernetes.APIServer != "" {
		t.Error("WithDefaults modified its receiver")
	}
	bad := yaml.NewDecoder(strings.NewReader("jwt: {issuer: x}\n"))
	bad.KnownFields(true)
	if err := bad.Decode(&Config{}); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestResolvePaths(t *testing.T) {
	c := Config{
		MTLS:       MTLSConfig{Bundles: []TrustBundle{{File: "b.pem"}, {File: "/abs/b.pem"}}},
		JWT:        JWTConfig{Issuers: []IssuerConfig{{JWKSFile: "j.json", CAFile: "ca.pem", BearerTokenFile: "tok"}}},
		Kubernetes: &KubernetesConfig{TokenFile: "t", CAFile: "c"},
		Posture:    &PostureConfig{File: "p.json"},
	}
	c.ResolvePaths("/etc/credgate")
	got := []string{c.MTLS.Bundles[0].File, c.MTLS.Bundles[1].File, c.JWT.Issuers[0].JWKSFile, c.JWT.Issuers[0].CAFile,
		c.JWT.Issuers[0].BearerTokenFile, c.Kubernetes.TokenFile, c.Kubernetes.CAFile, c.Posture.File}
	want := []string{"/etc/credgate/b.pem", "/abs/b.pem", "/etc/credgate/j.json", "/etc/credgate/ca.pem",
		"/etc/credgate/tok", "/etc/credgate/t", "/etc/credgate/c", "/etc/credgate/p.json"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
}

func TestPostureFeed(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	path := writeFile(t, dir, "posture.json", []byte(`{"billing-api": {"patched": true, "scan_age_days": 3, "score": 0.5, "tags": ["a"]}}`))
	f, err := NewPostureFeed(context.Background(), PostureConfig{File: path, Interval: 5 * time.Millisecond, MaxAge: time.Hour}, withClock(clock.Now), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]any{"patched": true, "scan_age_days": int64(3), "score": 0.5, "tags": []any{"a"}}
	if diff := cmp.Diff(want, f.Lookup("billing-api")); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if f.Lookup("web") != nil {
		t.Error("record of an unknown workload")
	}
	writeFile(t, dir, "posture.json", []byte(`{"billing-api": {"patched": false}}`))
	waitFor(t, "the changed feed", func() bool { return f.Lookup("billing-api")["patched"] == false })
	if _, err := f.file.Load(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "posture.json", []byte(`{"billing-api": 1}`))
	if _, err := f.file.Load(); err == nil {
		t.Fatal("a record that is not an object was accepted")
	}
	if f.Lookup("billing-api")["patched"] != false {
		t.Error("a bad document replaced the last good one")
	}
	clock.Advance(2 * time.Hour)
	if f.Lookup("billing-api") != nil {
		t.Error("a feed older than max_age is still used")
	}
	if _, err := NewPostureFeed(context.Background(), PostureConfig{File: writeFile(t, dir, "bad.json", []byte("[1]"))}); err == nil {
		t.Error("an invalid feed file was accepted at start")
	}
}

func TestPostureFeedURL(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer feed-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if n.Add(1) == 1 {
			w.Write([]byte(`{"web": {"patched": false}}`))
			return
		}
		w.Write([]byte(`{"web": {"patched": true}}`))
	}))
	defer srv.Close()
	f, err := NewPostureFeed(context.Background(), PostureConfig{URL: srv.URL, Interval: 5 * time.Millisecond,
		BearerTokenFile: writeFile(t, t.TempDir(), "tok", []byte("feed-token\n"))}, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Lookup("web")["patched"] != false {
		t.Fatalf("first fetch: %v", f.Lookup("web"))
	}
	waitFor(t, "the polled update", func() bool { return f.Lookup("web")["patched"] == true })
}

// TestNew builds every verifier from a Config, as the gateway does, and
// resolves a connection presenting a certificate and a token.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "prod")
	key := newRSAKey(t, "k")
	oidc := newOIDCServer(t, jwks(t, key))
	api := newAPIServer(t)
	now := time.Now()
	tok := key.sign(t, map[string]any{"iss": oidc.srv.URL, "sub": "system:serviceaccount:billing:api", "aud": "credgate",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}, k8sClaims("billing", "api", "api-1"))
	api.authenticate(tok, "system:serviceaccount:billing:api", nil, "api-1")
	kc := api.config(t)
	kc.Issuers = []string{oidc.srv.URL} // review the same token the jwt factor verifies
	cfg := Config{
		MTLS:       MTLSConfig{Bundles: []TrustBundle{{File: "bundle.pem", TrustDomain: "prod.example.org"}}},
		JWT:        JWTConfig{Issuers: []IssuerConfig{oidc.issuerConfig(ProfileKubernetes, "credgate")}},
		Kubernetes: &kc,
		Posture:    &PostureConfig{File: "posture.json"},
	}
	writeFile(t, dir, "bundle.pem", ca.pem())
	writeFile(t, dir, "posture.json", []byte(`{"billing-api": {"patched": true}}`))
	cfg.ResolvePaths(dir)
	var logs lockedBuffer
	r, err := New(context.Background(), cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.ClientCAs() == nil {
		t.Error("ClientCAs is nil")
	}
	// Certificates made around t0 are not valid now: issue one for now.
	cert := issueNow(t, ca, "spiffe://prod.example.org/ns/billing/sa/api")
	specs := []Spec{{Name: "billing-api", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/ns/billing/*")},
		Namespaces: []string{"billing"}, Require: []string{KindMTLS, KindJWT, KindKubernetes}}}
	w, err := r.Resolve(context.Background(), Evidence{
		Source:             netip.MustParseAddrPort("127.0.0.1:5000"),
		PeerCertificates:   []*x509.Certificate{cert},
		ProxyAuthorization: "Bearer " + tok,
	}, specs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"source", "mtls", "jwt", "kubernetes"}, w.FactorKinds()); diff != "" {
		t.Errorf("factors (-want +got):\n%s", diff)
	}
	if w.Name != "billing-api" || w.Posture["patched"] != true {
		t.Errorf("workload %q posture %v", w.Name, w.Posture)
	}
	if got := w.Attributes()["pod"]; got != "api-1" {
		t.Errorf("pod attribute = %q", got)
	}
	// Failures are refused without the token in the error or the logs.
	forged := key.sign(t, map[string]any{"iss": oidc.srv.URL, "sub": "x", "aud": "other", "exp": now.Add(time.Hour).Unix()})
	for _, auth := range []string{"Bearer " + forged, "Bearer " + tok + "x", "Basic " + forged} {
		_, err := r.Resolve(context.Background(), Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: auth}, specs)
		if err == nil {
			t.Fatalf("Resolve(%.30q) succeeded", auth)
		}
		assertNoSecret(t, err.Error(), strings.TrimPrefix(strings.TrimPrefix(auth, "Bearer "), "Basic "))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	for _, secret := range []string{tok, forged, gatewayToken} {
		assertNoSecret(t, logs.String(), secret)
	}

	bad := cfg
	bad.MTLS.Bundles = []TrustBundle{{File: dir + "/missing.pem"}}
	if _, err := New(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing bundle file: %v", err)
	}
}

// lockedBuffer captures output goroutines write while the test reads.
type lockedBuffer = syncbuf.Buffer

func issueNow(t *testing.T, ca *testCA, uri string) *x509.Certificate {
	t.Helper()
	return ca.issue(t, leafOpts{uris: []string{uri}, notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(time.Hour)})
}

// headerVerifier is a verifier plugin for the tests: a Proxy-Authorization
// "Plugin <key>" whose key is in its settings makes a factor.
type headerVerifier struct {
	Key     string `yaml:"key"`
	Subject string `yaml:"subject"`
	closed  *atomic.Bool
}

func (h *headerVerifier) Kind() string             { return "testplugin" }
func (h *headerVerifier) ReadsProxyAuthorization() {}
func (h *headerVerifier) Validate() error {
	if h.Key == "" {
		return errors.New("testplugin: key is required")
	}
	return nil
}
func (h *headerVerifier) Close() error { h.closed.Store(true); return nil }
func (h *headerVerifier) Verify(_ context.Context, ev Evidence) (*Factor, error) {
	scheme, v, ok := strings.Cut(ev.ProxyAuthorization, " ")
	if !ok || scheme != "Plugin" {
		return nil, nil
	}
	if v != h.Key {
		return nil, fmt.Errorf("testplugin: wrong key: %w", ErrInvalid)
	}
	return &Factor{Kind: "testplugin", Subject: h.Subject}, nil
}

var pluginClosed atomic.Bool

func init() {
	Register(Module{Name: "testplugin", New: func() Verifier { return &headerVerifier{closed: &pluginClosed} }})
}

// TestVerifierPlugins: a registered verifier plugin is built from its
// identity.verifiers block through the module lifecycle, verifies
// factors a policy can require, is closed with the resolver, and bad
// blocks are errors that say where and what.
func TestVerifierPlugins(t *testing.T) {
	if diff := cmp.Diff([]string{"idtest-cleanup", "idtest-misbehave", "jwt", "kubernetes", "mtls", "source", "testplugin"}, Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	block := func(src string) Config {
		var c Config
		if err := yaml.Unmarshal([]byte("verifiers:\n"+src), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	cfg := block("  testplugin:\n    key: k1\n    subject: build-bot\n")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	specs := []Spec{{Name: "bot", Require: []string{"testplugin"}}}
	ev := Evidence{Source: netip.MustParseAddrPort("10.0.0.1:1"), ProxyAuthorization: "Plugin k1"}
	if w, err := r.Resolve(context.Background(), ev, specs); err != nil || w.Name != "bot" {
		t.Errorf("Resolve with the plugin's factor = %q, %v; want bot", w.Name, err)
	}
	ev.ProxyAuthorization = "Plugin wrong"
	if _, err := r.Resolve(context.Background(), ev, specs); !errors.Is(err, ErrInvalid) {
		t.Errorf("Resolve with a bad key = %v, want ErrInvalid", err)
	}
	pluginClosed.Store(false)
	r.Close()
	if !pluginClosed.Load() {
		t.Error("the plugin was not closed with the resolver")
	}

	for _, tt := range []struct{ src, want string }{
		{"  testplugin:\n    key: k1\n    bogus: 1\n", `identity.verifiers.testplugin (line 3, column 5): line 4: unknown field "bogus"; known fields are key, subject`},
		{"  testplugin:\n    subject: x\n", `testplugin: key is required`},
		{"  nosuch:\n    a: 1\n", `no verifier plugin "nosuch" is compiled in (compiled in: [idtest-cleanup idtest-misbehave testplugin])`},
		{"  mtls:\n    a: 1\n", `"mtls" is a built-in factor; configure it under identity.mtls`},
	} {
		_, err := New(context.Background(), block(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q) = %v, want an error containing %q", tt.src, err, tt.want)
		}
	}
	for _, tt := range []struct{ src, want string }{
		{"  nosuch: {}\n", `identity.verifiers.nosuch: no verifier plugin "nosuch" is compiled in`},
		{"  jwt: {}\n", `identity.verifiers.jwt: "jwt" is a built-in factor`},
	} {
		if err := block(tt.src).Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%q) = %v, want %q", tt.src, err, tt.want)
		}
	}
}

// BenchmarkResolveCached measures identity resolution for a cached token
// plus a verified certificate: the per-request cost. "listener" is a
// chain the TLS listener verified (tls.client_ca); "bundle" is a chain
// identity verifies itself against identity.mtls.bundles (as with the
// Workload API), served from the verified-chain cache after the first
// request.
func BenchmarkResolveCached(b *testing.B) {
	clock := newFakeClock()
	dir := b.TempDir()
	ca := newCA(b, "prod")
	key := newRSAKey(b, "k")
	const iss = "https://k8s.example"
	cfg := Config{
		MTLS: MTLSConfig{Bundles: []TrustBundle{{File: writeFile(b, dir, "prod.pem", ca.pem()), TrustDomain: "prod.example.org"}}},
		JWT:  JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Profile: ProfileKubernetes, Audiences: []string{"credgate"}, JWKSFile: writeFile(b, dir, "j.json", jwks(b, key))}}},
	}
	r, err := New(context.Background(), cfg, withClock(clock.Now))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cert := ca.issue(b, leafOpts{uris: []string{"spiffe://prod.example.org/ns/billing/sa/api"}})
	token := "Bearer " + key.sign(b, std(iss, "system:serviceaccount:billing:api", "credgate"), k8sClaims("billing", "api", "p"))
	specs := []Spec{
		{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}},
		{Name: "billing-api", SPIFFE: []SPIFFEPattern{MustParseSPIFFEPattern("spiffe://prod.example.org/ns/billing/*")}, Namespaces: []string{"billing"}, Require: []string{KindMTLS, KindJWT}},
	}
	for _, bc := range []struct {
		name string
		ev   Evidence
	}{
		{"listener", Evidence{Source: netip.MustParseAddrPort("10.1.2.3:5000"), VerifiedChains: [][]*x509.Certificate{{cert, ca.cert}}, ProxyAuthorization: token}},
		{"bundle", Evidence{Source: netip.MustParseAddrPort("10.1.2.3:5000"), PeerCertificates: []*x509.Certificate{cert}, ProxyAuthorization: token}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if w, err := r.Resolve(context.Background(), bc.ev, specs); err != nil || w.Name != "billing-api" {
				b.Fatalf("Resolve: %q %v", w.Name, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Resolve(context.Background(), bc.ev, specs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
