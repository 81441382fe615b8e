//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/testpki"
)

// The credgate-2fa target's workload: what a SPIRE-issued client
// presents.
const (
	benchTrustDomain = "bench.test"
	benchSPIFFEID    = "spiffe://" + benchTrustDomain + "/ns/bench/sa/client"
)

// twoFactorSetup is the identity material of the credgate-2fa target: a
// SPIFFE CA whose bundle the gateway trusts for its trust domain
// (identity.mtls.bundles, the code path the Workload API's bundles take
// too), the client's X.509-SVID, a JWT-SVID of the same SPIFFE ID signed
// by a key in a JWKS file, and the TLS listener's own certificate.
type twoFactorSetup struct {
	ca       *testpki.Authority
	listener *testpki.Authority
	svid     tls.Certificate
	token    string
}

// newTwoFactorSetup writes client-ca.pem, listener.pem, listener-key.pem
// and jwks.json into dir.
func newTwoFactorSetup(dir string) (*twoFactorSetup, error) {
	tf := &twoFactorSetup{}
	var err error
	if tf.ca, err = testpki.NewAuthority("credgate-bench SPIFFE CA"); err != nil {
		return nil, err
	}
	if tf.svid, err = tf.ca.SVID(benchSPIFFEID); err != nil {
		return nil, err
	}
	if tf.listener, err = testpki.NewAuthority("credgate-bench listener CA"); err != nil {
		return nil, err
	}
	leaf, err := tf.listener.Leaf("127.0.0.1")
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("credgate-2fa: JWT key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "bench"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("credgate-2fa: JWT signer: %w", err)
	}
	now := time.Now()
	// A JWT-SVID: sub is the SPIFFE ID, no iss (SPIRE's default); long
	// enough for any run.
	tf.token, err = jwt.Signed(signer).Claims(jwt.Claims{
		Subject: benchSPIFFEID, Audience: jwt.Audience{"credgate"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(24 * time.Hour)),
	}).Serialize()
	if err != nil {
		return nil, fmt.Errorf("credgate-2fa: sign JWT: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		return nil, fmt.Errorf("credgate-2fa: JWKS: %w", err)
	}
	for name, data := range map[string][]byte{
		"client-ca.pem": tf.ca.CertPEM, "listener.pem": certPEM, "listener-key.pem": keyPEM, "jwks.json": jwks,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("credgate-2fa: %w", err)
		}
	}
	return tf, nil
}

// policy turns the static-rule policy into the two-factor one: the same
// workload name and rule, selected by SPIFFE ID and requiring both
// factors instead of the source address.
func (tf *twoFactorSetup) policy(static string) string {
	return strings.Replace(static, "    cidrs: [127.0.0.1/32]\n    require: [source]\n",
		"    spiffe: "+benchSPIFFEID+"\n    require: [mtls, jwt]\n", 1)
}

// config is appended to the static-rule config: the TLS listener on
// tlsAddr and the identity settings.
func (tf *twoFactorSetup) config(tlsAddr string) string {
	return fmt.Sprintf(`tls_listen: %q
tls:
  cert: listener.pem
  key: listener-key.pem
identity:
  mtls:
    bundles:
      - file: client-ca.pem
        trust_domain: %s
    require_spiffe: true
  jwt:
    issuers:
      - profile: spiffe
        trust_domain: %s
        audiences: [credgate]
        jwks_file: jwks.json
`, tlsAddr, benchTrustDomain, benchTrustDomain)
}

func (tf *twoFactorSetup) describe() string {
	return "the same binary, policy and rule, but the workload is selected by SPIFFE ID with `require: [mtls, jwt]`: the load generator connects to `tls_listen` (TLS 1.3, ECDSA P-256) presenting an X.509-SVID that identity verifies against `identity.mtls.bundles` (trust domain " + benchTrustDomain + ") and sends a JWT-SVID (ES256, spiffe profile, JWKS file) in `Proxy-Authorization` with the CONNECT; both must verify and name the same SPIFFE ID"
}

// proxyTLS is the load generator's TLS configuration towards the
// gateway's TLS listener.
func (tf *twoFactorSetup) proxyTLS() *tls.Config {
	return &tls.Config{
		ServerName:   "127.0.0.1",
		RootCAs:      poolOf(tf.listener.Cert),
		Certificates: []tls.Certificate{tf.svid},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
}

// proxyHeader carries the JWT-SVID with the CONNECT.
func (tf *twoFactorSetup) proxyHeader() http.Header {
	return http.Header{"Proxy-Authorization": {"Bearer " + tf.token}}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
