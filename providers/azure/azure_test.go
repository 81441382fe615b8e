package azure_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/azure"
	"github.com/credgate/credgate/providers/jwtsign"
	"github.com/credgate/credgate/providers/providertest"
	_ "github.com/credgate/credgate/providers/static"
)

const (
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientID = "6731de76-14a6-49ae-97bc-6eba6914391e"
	secret   = "Qk~8Q~azure-test-secret-value-4f1c"
	storage  = "https://storage.azure.com"
	issuer   = "https://oidc.example.test"
)

var (
	keyOnce   sync.Once
	rsaKey    *rsa.PrivateKey
	otherKey  *rsa.PrivateKey
	issuerKey *rsa.PrivateKey
)

func keys() {
	keyOnce.Do(func() {
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		otherKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		issuerKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
}

// selfSigned returns a certificate for key valid from nb to na.
func selfSigned(t testing.TB, key crypto.Signer, nb, na time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "credgate-azure-test"},
		NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(t testing.TB, cert *x509.Certificate, key crypto.Signer) []byte {
	t.Helper()
	var out []byte
	if cert != nil {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	return out
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type fixture struct {
	entra    *azuretest.Entra
	caFile   string
	cert     *x509.Certificate
	certFile string // certificate and key in one PEM
	base     string // tenant, client_id, resource, authority_host, ca_cert
}

func newFixture(t testing.TB, opts azuretest.EntraOptions) *fixture {
	t.Helper()
	keys()
	e := azuretest.NewEntra(opts)
	t.Cleanup(e.Close)
	f := &fixture{entra: e, caFile: writeFile(t, "ca.pem", e.CertPEM())}
	f.cert = selfSigned(t, rsaKey, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	f.certFile = writeFile(t, "app.pem", pemOf(t, f.cert, rsaKey))
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &issuerKey.PublicKey, KeyID: "iss-1", Algorithm: "RS256", Use: "sig"}}}
	e.AddApp(azuretest.App{Tenant: tenant, ClientID: clientID, Secret: secret, Certificates: []*x509.Certificate{f.cert},
		Federated: []azuretest.FederatedCredential{{Issuer: issuer, Subject: "system:serviceaccount:billing:api", JWKS: jwks}}})
	f.base = fmt.Sprintf("tenant: %s\nclient_id: %s\nresource: %s\nauthority_host: %s\nca_cert: %s\ntimeout: 2s\n", tenant, clientID, storage, e.URL, f.caFile)
	return f
}

// secretInput is a credential holding the client secret.
type secretInput struct{ v string }

func (s secretInput) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(s.v)}}, nil
}

func tryLoad(t testing.TB, settings string, inputs map[string]providers.Provider) (providers.Provider, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(context.Background(), azure.Name, n.Content[0])
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = p.(providers.CleanerUpper).Cleanup() })
	if c, ok := p.(providers.Composer); ok && inputs != nil {
		c.SetInputs(inputs)
	}
	return p, nil
}

func load(t testing.TB, settings string, inputs map[string]providers.Provider) providers.Provider {
	t.Helper()
	p, err := tryLoad(t, settings, inputs)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func fetch(p providers.Provider, wl identity.Workload) (*providers.Credential, error) {
	return p.Fetch(context.Background(), providers.Request{Credential: "azure", Workload: wl})
}

// noSecret fails when err's text holds any of the values.
func noSecret(t *testing.T, err error, values ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range values {
		if v != "" && strings.Contains(err.Error(), v) {
			t.Errorf("the error holds a secret value: %v", err)
		}
	}
}

func checkToken(t *testing.T, f *fixture, cred *providers.Credential, method string) {
	t.Helper()
	tok, ok := cred.Field(providers.FieldToken)
	if !ok {
		t.Fatal("no token field")
	}
	in, ok := f.entra.TokenInfo(tok.Reveal())
	if !ok || in.Method != method || in.Resource != storage || in.ClientID != clientID || in.Tenant != tenant {
		t.Errorf("token issued %+v (known %v), want %s for %s", in, ok, method, storage)
	}
	if d := time.Until(cred.Expiry); d < 50*time.Minute || d > time.Hour {
		t.Errorf("expiry in %s, want about an hour less the margin", d)
	}
}

func TestClientSecret(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	p := load(t, f.base+"client_secret: {credential: entra-secret}\n", map[string]providers.Provider{"entra-secret": secretInput{secret}})
	cred, err := fetch(p, identity.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, f, cred, "secret")

	bad := load(t, f.base+"client_secret: {credential: entra-secret}\n", map[string]providers.Provider{"entra-secret": secretInput{"wrong-" + secret}})
	_, err = fetch(bad, identity.Workload{})
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "not its Secret ID") {
		t.Errorf("a wrong secret: %v, want AADSTS7000215 and the fix", err)
	}
	if errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("a wrong secret is not a transient failure: %v", err)
	}
	noSecret(t, err, secret)

	missing := load(t, f.base+"client_secret: {credential: entra-secret, field: password}\n", map[string]providers.Provider{"entra-secret": secretInput{secret}})
	if _, err := fetch(missing, identity.Workload{}); err == nil || !strings.Contains(err.Error(), "no field password") {
		t.Errorf("a missing field: %v", err)
	}
}

func TestCertificate(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	for _, tc := range []struct{ name, settings string }{
		{"one PEM file", "client_certificate: {file: CERT}\n"},
		{"key apart with PS256", "client_certificate: {file: CERTONLY, private_key: {file: KEYONLY, algorithm: PS256}}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := strings.NewReplacer("CERTONLY", writeFile(t, "c.pem", pemOf(t, f.cert, nil)), "KEYONLY", writeFile(t, "k.pem", pemOf(t, nil, rsaKey)),
				"CERT", f.certFile).Replace(tc.settings)
			p := load(t, f.base+s, nil)
			for range 2 { // a fresh assertion (jti) each time: no replay
				cred, err := fetch(p, identity.Workload{})
				if err != nil {
					t.Fatalf("%v (Entra refused %v)", err, f.entra.Refused())
				}
				checkToken(t, f, cred, "certificate")
			}
		})
	}
	t.Run("from another credential", func(t *testing.T) {
		in := &providers.Credential{Fields: map[string]providers.Secret{
			providers.FieldCertificate: providers.NewSecret(string(pemOf(t, f.cert, nil))),
			providers.FieldPrivateKey:  providers.NewSecret(string(pemOf(t, nil, rsaKey)))}}
		p := load(t, f.base+"client_certificate: {credential: app-cert}\n", map[string]providers.Provider{"app-cert": fixed{in}})
		if got := p.(providers.Composer).Inputs(); len(got) != 1 || got[0] != "app-cert" {
			t.Errorf("Inputs = %q", got)
		}
		cred, err := fetch(p, identity.Workload{})
		if err != nil {
			t.Fatal(err)
		}
		checkToken(t, f, cred, "certificate")
	})
}

type fixed struct{ c *providers.Credential }

func (f fixed) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return f.c, nil
}

// TestCertificateBadInput: each mistake is a clear error naming the
// setting and the fix, before or instead of a refusal by Entra.
func TestCertificateBadInput(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecCert := selfSigned(t, ecKey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	unregistered := selfSigned(t, otherKey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	expired := selfSigned(t, rsaKey, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	unreadable := writeFile(t, "unreadable.pem", pemOf(t, f.cert, rsaKey))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"EC key", writeFile(t, "ec.pem", pemOf(t, ecCert, ecKey)), "RSA"},
		{"missing file", filepath.Join(t.TempDir(), "absent.pem"), "cannot read the certificate"},
		{"no certificate", writeFile(t, "key.pem", pemOf(t, nil, rsaKey)), "no PEM CERTIFICATE block"},
		{"key not the certificate's", writeFile(t, "mismatch.pem", pemOf(t, f.cert, otherKey)), "private key is not the certificate's"},
		{"expired", writeFile(t, "expired.pem", pemOf(t, expired, rsaKey)), "expired on"},
		{"not registered", writeFile(t, "other.pem", pemOf(t, unregistered, otherKey)), "AADSTS700027"},
		{"encrypted key", writeFile(t, "enc.pem", append(pemOf(t, f.cert, nil), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})...)), "encrypted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "missing file" || os.Getuid() != 0 || tc.file != unreadable {
				p := load(t, f.base+"client_certificate: {file: "+tc.file+"}\n", nil)
				_, err := fetch(p, identity.Workload{})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error with %q", err, tc.want)
				}
				if errors.Is(err, providers.ErrUnavailable) {
					t.Errorf("%v is marked transient", err)
				}
				noSecret(t, err, "PRIVATE KEY", "MII")
			}
		})
	}
}

// issuerToken signs a workload token as the OIDC issuer does.
func issuerToken(t testing.TB, sub, aud string) string {
	t.Helper()
	s, err := jwtsign.NewFromKey(issuerKey, jwtsign.RS256, "iss-1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := s.Sign(context.Background(), nil, map[string]any{"iss": issuer, "sub": sub, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func workload(name, kind, tok string) identity.Workload {
	return identity.Workload{Name: name, Factors: []identity.Factor{
		{Kind: identity.KindSource, Subject: "127.0.0.1"},
		{Kind: kind, Subject: "s", Token: identity.NewToken(tok)}}}
}

func TestFederated(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	p := load(t, f.base+"federated: {factor: jwt}\n", nil)
	good := issuerToken(t, "system:serviceaccount:billing:api", azuretest.FederatedAudience)
	cred, err := fetch(p, workload("billing", identity.KindJWT, good))
	if err != nil {
		t.Fatalf("%v (Entra refused %v)", err, f.entra.Refused())
	}
	checkToken(t, f, cred, "federated")

	// The Entra token is not kept beyond the workload token it stands for.
	soon := time.Now().Add(10 * time.Minute)
	wl := workload("billing", identity.KindJWT, good)
	wl.Factors[1].Expires = soon
	if cred, err := fetch(p, wl); err != nil {
		t.Fatal(err)
	} else if !cred.Expiry.Equal(soon) {
		t.Errorf("expiry %v, want the workload token's %v", cred.Expiry, soon)
	}

	other := issuerToken(t, "system:serviceaccount:reports:job", azuretest.FederatedAudience)
	_, err = fetch(p, workload("reports", identity.KindJWT, other))
	if err == nil || !strings.Contains(err.Error(), "AADSTS70021") || !strings.Contains(err.Error(), "federated identity credential") {
		t.Errorf("an unknown subject: %v, want AADSTS70021 and the fix", err)
	}
	noSecret(t, err, other)

	// A token signed by another key with the right claims is refused
	// by the fake's JWKS check.
	forged := good[:strings.LastIndexByte(good, '.')] + "." + strings.Repeat("A", 342)
	if _, err := fetch(p, workload("billing", identity.KindJWT, forged)); err == nil {
		t.Error("a forged workload token got an Entra token")
	}

	_, err = fetch(p, workload("billing", identity.KindKubernetes, good))
	if err == nil || !strings.Contains(err.Error(), "no verified jwt token") {
		t.Errorf("no jwt factor: %v", err)
	}

	// The cache scope: per workload and per token, the same for the same
	// caller, never naming the token.
	sc := p.(providers.Scoped)
	scope := func(wl identity.Workload) string {
		return sc.CacheScope(providers.Request{Credential: "azure", Workload: wl})
	}
	a := scope(workload("billing", identity.KindJWT, good))
	if a != scope(workload("billing", identity.KindJWT, good)) {
		t.Error("the same caller got two scopes")
	}
	for _, wl := range []identity.Workload{workload("reports", identity.KindJWT, good), workload("billing", identity.KindJWT, other), {Name: "billing"}} {
		if scope(wl) == a {
			t.Errorf("workload %s shares the scope of billing's token", wl.DisplayName())
		}
	}
	if strings.Contains(a, good) {
		t.Error("the scope holds the token")
	}
	// Non-federated modes share one token.
	sp := load(t, f.base+"client_secret: {credential: s}\n", nil).(providers.Scoped)
	if sp.CacheScope(providers.Request{Workload: workload("a", identity.KindJWT, good)}) != sp.CacheScope(providers.Request{Workload: workload("b", identity.KindJWT, other)}) {
		t.Error("a client secret token differs per workload")
	}
}

// TestEntraFailures: 5xx, 429 and timeouts are transient (503); 4xx
// refusals name the AADSTS code and the fix (502).
func TestEntraFailures(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	inputs := map[string]providers.Provider{"s": secretInput{secret}}
	settings := f.base + "client_secret: {credential: s}\n"
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		f.entra.Fail(status)
		_, err := fetch(load(t, settings, inputs), identity.Workload{})
		if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprint(status)) {
			t.Errorf("Entra %d: %v, want ErrUnavailable naming the status", status, err)
		}
		noSecret(t, err, secret)
	}
	f.entra.Fail(0)

	f.entra.Stall(true)
	p := load(t, strings.Replace(settings, "timeout: 2s", "timeout: 100ms", 1), inputs)
	_, err := fetch(p, identity.Workload{})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("a stalled Entra: %v, want ErrUnavailable and timeout", err)
	}
	f.entra.Stall(false)

	for _, tc := range []struct{ replace, with, want string }{
		{tenant, "contoso.onmicrosoft.com", "AADSTS90002"},
		{clientID, "00000000-0000-0000-0000-000000000000", "AADSTS700016"},
	} {
		_, err := fetch(load(t, strings.Replace(settings, tc.replace, tc.with, 1), inputs), identity.Workload{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, providers.ErrUnavailable) {
			t.Errorf("%s: %v, want a 4xx naming %s", tc.with, err, tc.want)
		}
	}

	// Nothing listens: connection refused is transient.
	dead := strings.Replace(settings, f.entra.URL, "https://127.0.0.1:1", 1)
	if _, err := fetch(load(t, dead, inputs), identity.Workload{}); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("no server: %v", err)
	}
}

// TestClockSkew: a gateway clock far behind Entra's makes Entra refuse
// the assertion as outside its validity (AADSTS700024); the error says to
// check the clock and by how much it is off.
func TestClockSkew(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{Now: func() time.Time { return time.Now().Add(20 * time.Minute) }})
	p := load(t, f.base+"client_certificate: {file: "+f.certFile+"}\n", nil)
	_, err := fetch(p, identity.Workload{})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700024") || !strings.Contains(err.Error(), "clock") || !strings.Contains(err.Error(), "off Entra's") {
		t.Errorf("skew: %v", err)
	}
}

func TestValidate(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	ok := "tenant: " + tenant + "\nclient_id: " + clientID + "\n"
	for _, tc := range []struct{ settings, want string }{
		{"client_id: c\nresource: r\nclient_secret: {credential: s}", "tenant is required"},
		{"tenant: common\nclient_id: c\nresource: r\nclient_secret: {credential: s}", "is not a tenant"},
		{"tenant: 'a/b'\nclient_id: c\nresource: r\nclient_secret: {credential: s}", "neither a GUID"},
		{"tenant: t\nresource: r\nclient_secret: {credential: s}", "client_id is required"},
		{ok + "client_secret: {credential: s}", "set resource"},
		{ok + "resource: r\nscope: r/.default\nclient_secret: {credential: s}", "set resource"},
		{ok + "scope: https://graph.microsoft.com/User.Read\nclient_secret: {credential: s}", "/.default"},
		{ok + "resource: https://graph.microsoft.com/.default\nclient_secret: {credential: s}", "without /.default"},
		{ok + "resource: r", "exactly one of client_secret"},
		{ok + "resource: r\nclient_secret: {credential: s}\nfederated: {}", "exactly one of client_secret"},
		{ok + "resource: r\nclient_secret: {field: x}", "client_secret needs credential"},
		{ok + "resource: r\nclient_certificate: {}", "set file"},
		{ok + "resource: r\nclient_certificate: {file: " + f.certFile + ", private_key: {file: " + f.certFile + ", algorithm: ES256}}", "RS256 or PS256"},
		{ok + "resource: r\nfederated: {factor: mtls}", "not jwt or kubernetes"},
		{ok + "resource: r\nclient_secret: {credential: s}\nauthority_host: http://login.example.com", "https"},
		{ok + "resource: r\nclient_secret: {credential: s}\nauthority_host: https://login.example.com/tenant", "without a path"},
		{ok + "resource: r\nclient_secret: {credential: s}\nca_cert: /nonexistent/ca.pem", "ca_cert"},
	} {
		if _, err := tryLoad(t, tc.settings, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.settings, err, tc.want)
		}
	}
}

func issuerTokenB(b testing.TB, sub string) string {
	return issuerToken(b, sub, azuretest.FederatedAudience)
}

// yamlNode decodes settings for providers.Load.
type yamlNode struct{ n yaml.Node }

func (y *yamlNode) of(t testing.TB, settings string) *yaml.Node {
	t.Helper()
	if err := yaml.Unmarshal([]byte(settings), &y.n); err != nil {
		t.Fatal(err)
	}
	return y.n.Content[0]
}

// TestConformance runs the checks every provider passes against the fake
// Entra: settings errors at FILE:LINE:COL, the token redacted in every
// printed form, one grant for concurrent first requests, expiry, ctx.
func TestConformance(t *testing.T) {
	f := newFixture(t, azuretest.EntraOptions{})
	settings := f.base + "client_certificate: {file: " + f.certFile + "}\n"
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     azure.Name,
		Settings: settings,
		Bad: []providertest.BadSettings{
			{Settings: "client_id: c\nresource: r\nclient_certificate: {file: " + f.certFile + "}", Want: "tenant is required"},
			{Settings: strings.Replace(settings, "resource: "+storage, "scope: "+storage, 1), Want: "/.default"},
		},
		Issued: f.entra.Grants,
		Stalled: func(url string) string {
			return strings.Replace(settings, f.entra.URL, url, 1)
		},
		Lifetime:        f.entra.SetLifetime,
		LifetimeField:   "expires_in",
		DefaultLifetime: azure.DefaultTokenLifetime,
	})
}

// TestCacheScopeClass keeps every setting classified: none is rendered
// from workload attributes (the federated token is covered by
// TestFederated).
func TestCacheScopeClass(t *testing.T) {
	providertest.CheckScopes(t, providertest.ScopeCheck{
		Fixed: []string{"tenant", "client_id", "resource", "scope", "authority_host", "client_secret", "client_certificate",
			"federated", "managed_identity", "ca_cert", "timeout"},
		New: func(t *testing.T, _ map[string]string) providers.Provider {
			return providertest.Load(t, azure.Name, "tenant: t\nclient_id: c\nresource: r\nfederated: {}\n")
		},
	})
}
