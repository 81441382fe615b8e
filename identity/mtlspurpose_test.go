package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
)

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
	v, tdCA, anyCA := twoBundleVerifier(t)
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
				o := leafOpts{cn: "client", eku: tt.eku, noEKU: tt.eku == nil, unknownEKU: tt.unknown, isCA: tt.isCA}
				if path.uri != "" {
					o.uris = []string{path.uri}
				}
				leaf := path.ca.issue(t, o)
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
