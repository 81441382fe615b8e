package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// purposeCert is a client certificate of ca with these extended key
// usages (unknown: an OID Go does not name) and basic constraints.
func purposeCert(t *testing.T, ca *testCA, uri string, eku []x509.ExtKeyUsage, unknown bool, isCA bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
	}
	if unknown {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 55555, 1}}
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientCertificatePurpose: a client certificate identifies a caller
// only if it was issued for TLS client authentication, and the answer is
// the same whichever path verified it — the listener's tls.client_ca
// (crypto/tls's verification, VerifiedChains), identity.mtls.bundles
// bound to a trust domain (x509svid.Verify), or a bundle for any
// certificate (PeerCertificates). Before, an X.509-SVID whose extended
// key usage was serverAuth only (or code signing, or an unknown purpose)
// identified a caller through a trust domain's bundle while the listener
// refused it, and a CA certificate presented as the leaf identified one
// through the listener and a generic bundle while x509svid refused it:
// 9 of the 40 verifications below accepted such a certificate.
func TestClientCertificatePurpose(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	tdCA, anyCA := newCA(t, "trust domain CA"), newCA(t, "generic CA")
	cfg := Config{MTLS: MTLSConfig{Bundles: []TrustBundle{
		{File: writeFile(t, dir, "td.pem", tdCA.pem()), TrustDomain: "prod.example.org"},
		{File: writeFile(t, dir, "any.pem", anyCA.pem())},
	}}}.WithDefaults()
	v, err := newMTLSVerifier(context.Background(), cfg.MTLS, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	const id = "spiffe://prod.example.org/ns/billing/sa/api"
	client, server := x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth
	tests := []struct {
		name    string
		eku     []x509.ExtKeyUsage
		unknown bool
		isCA    bool
		ok      bool
	}{
		{name: "clientAuth", eku: []x509.ExtKeyUsage{client}, ok: true},
		{name: "serverAuth and clientAuth (SPIRE's)", eku: []x509.ExtKeyUsage{server, client}, ok: true},
		{name: "anyExtendedKeyUsage", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, ok: true},
		{name: "no extended key usage", ok: true},
		{name: "clientAuth and an unknown purpose", eku: []x509.ExtKeyUsage{client}, unknown: true, ok: true},
		{name: "serverAuth only", eku: []x509.ExtKeyUsage{server}},
		{name: "code signing only", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
		{name: "an unknown purpose only", unknown: true},
		{name: "CA certificate with clientAuth", eku: []x509.ExtKeyUsage{client}, isCA: true},
		{name: "CA certificate without extended key usage", isCA: true},
	}
	for _, tt := range tests {
		for _, path := range []struct {
			name string
			ca   *testCA
			uri  string
		}{
			{"X.509-SVID", tdCA, id},
			{"certificate of a generic bundle", anyCA, ""},
		} {
			t.Run(tt.name+"/"+path.name, func(t *testing.T) {
				leaf := purposeCert(t, path.ca, path.uri, tt.eku, tt.unknown, tt.isCA)
				// What crypto/tls does with tls.client_ca
				// (VerifyClientCertIfGiven), then the mtls factor.
				roots := x509.NewCertPool()
				roots.AddCert(path.ca.cert)
				chains, lerr := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{client}})
				if lerr == nil {
					_, lerr = v.Verify(context.Background(), Evidence{VerifiedChains: chains})
				}
				_, berr := v.Verify(context.Background(), Evidence{PeerCertificates: []*x509.Certificate{leaf}})
				for what, err := range map[string]error{"through the listener's client CA": lerr, "through identity.mtls.bundles": berr} {
					if tt.ok && err != nil {
						t.Errorf("%s: refused: %v", what, err)
					}
					if !tt.ok && err == nil {
						t.Errorf("%s: a certificate not issued for client authentication identified the caller", what)
					}
					if !tt.ok && err != nil && what == "through identity.mtls.bundles" && !errors.Is(err, ErrInvalid) {
						t.Errorf("%s: error %v, want ErrInvalid", what, err)
					}
				}
			})
		}
	}
}
