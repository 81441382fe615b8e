package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// t0 is the fake clock's start: certificates and tokens are made around
// it, so tests do not depend on the wall clock.
var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// leafOpts describe a client certificate.
type leafOpts struct {
	cn        string
	uris      []string
	dns       []string
	notBefore time.Time
	notAfter  time.Time
	// eku are the extended key usages (nil: clientAuth), noEKU leaves
	// them out, unknownEKU adds an OID Go does not name, and isCA makes
	// the leaf a CA certificate.
	eku               []x509.ExtKeyUsage
	noEKU, unknownEKU bool
	isCA              bool
}

func (ca *testCA) issue(t testing.TB, o leafOpts) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if o.notBefore.IsZero() {
		o.notBefore = t0.Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = t0.Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.cn, Organization: []string{"Example"}},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.eku,
		DNSNames:     o.dns,
	}
	if o.eku == nil && !o.noEKU {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if o.unknownEKU {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 55555, 1}}
	}
	if o.isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// writeFile writes data to name in dir, atomically (rename), and returns
// the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// signingKey is a token signing key with its key id.
type signingKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func newRSAKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.RS256, key: k}
}

func newECKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.ES256, key: k}
}

func (k signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// jwks returns the JSON Web Key Set of the keys' public halves.
func jwks(t testing.TB, keys ...signingKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes a compact JWS of claims with k.
func (k signingKey) sign(t testing.TB, claims ...any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, opts)
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

// std returns registered claims valid at t0.
func std(iss, sub string, aud ...string) jwt.Claims {
	return jwt.Claims{
		Issuer:    iss,
		Subject:   sub,
		Audience:  jwt.Audience(aud),
		IssuedAt:  jwt.NewNumericDate(t0.Add(-time.Minute)),
		NotBefore: jwt.NewNumericDate(t0.Add(-time.Minute)),
		Expiry:    jwt.NewNumericDate(t0.Add(10 * time.Minute)),
	}
}

// oidcServer is an OpenID Connect issuer on 127.0.0.1 whose key set can
// be changed, counting JWKS fetches.
type oidcServer struct {
	srv        *httptest.Server
	caFile     string
	mu         sync.Mutex
	keys       []byte
	jwksHits   atomic.Int32
	issuerName string // defaults to srv.URL
	block      chan struct{}
	// jwksBase, when set, is where the discovery document says the JWKS
	// is (another server), instead of srv.URL.
	jwksBase string
	// jwksAuth is the Authorization header of the last JWKS fetch.
	jwksAuth atomic.Pointer[string]
}

func newOIDCServer(t *testing.T, keys []byte) *oidcServer {
	t.Helper()
	o := &oidcServer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := o.issuerName
		if iss == "" {
			iss = o.srv.URL
		}
		base := o.jwksBase
		if base == "" {
			base = o.srv.URL
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": base + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		o.jwksHits.Add(1)
		auth := r.Header.Get("Authorization")
		o.jwksAuth.Store(&auth)
		if b := o.block; b != nil {
			<-b
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(o.keys)
	})
	o.srv = httptest.NewTLSServer(mux)
	t.Cleanup(o.srv.Close)
	o.caFile = writeFile(t, t.TempDir(), "oidc-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.srv.Certificate().Raw}))
	return o
}

func (o *oidcServer) setKeys(keys []byte) {
	o.mu.Lock()
	o.keys = keys
	o.mu.Unlock()
}

// issuerConfig returns an issuer config that discovers o.
func (o *oidcServer) issuerConfig(profile string, aud ...string) IssuerConfig {
	return IssuerConfig{
		Issuer:       o.srv.URL,
		Profile:      profile,
		Audiences:    aud,
		DiscoveryURL: o.srv.URL + "/.well-known/openid-configuration",
		CAFile:       o.caFile,
	}
}

// twoBundleVerifier is an mtls verifier with two bundles: tdCA's, bound
// to trust domain prod.example.org, and anyCA's, for any certificate.
func twoBundleVerifier(t *testing.T) (v *mtlsVerifier, tdCA, anyCA *testCA) {
	t.Helper()
	dir := t.TempDir()
	tdCA, anyCA = newCA(t, "trust domain CA"), newCA(t, "generic CA")
	cfg := Config{MTLS: MTLSConfig{Bundles: []TrustBundle{
		{File: writeFile(t, dir, "td.pem", tdCA.pem()), TrustDomain: "prod.example.org"},
		{File: writeFile(t, dir, "any.pem", anyCA.pem())},
	}}}.WithDefaults()
	v, err := newMTLSVerifier(context.Background(), cfg.MTLS, testOptions(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, tdCA, anyCA
}
