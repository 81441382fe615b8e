package mitm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// newCert signs a CA certificate for key with parent's key (self-signed
// when parent is nil) and returns it parsed with its PEM.
func newCert(t *testing.T, name string, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLeafChain: a self-signed CA's leaves are sent alone, an
// intermediate CA's with the CA certificate, and either chain verifies
// against the root a client trusts, as crypto/tls verifies it (the
// certificates after the leaf are the intermediates).
func TestLeafChain(t *testing.T) {
	rootKey, interKey := newKey(t), newKey(t)
	root, rootPEM := newCert(t, "root", rootKey, nil, nil)
	inter, interPEM := newCert(t, "intermediate", interKey, root, rootKey)
	roots := x509.NewCertPool()
	roots.AddCert(root)

	for _, tc := range []struct {
		name          string
		certPEM, kPEM []byte
		want          int // certificates sent
		chainTo       *x509.Certificate
	}{
		{"self-signed", rootPEM, keyPEM(t, rootKey), 1, root},
		{"intermediate", interPEM, keyPEM(t, interKey), 2, inter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := ParseCA(tc.certPEM, tc.kPEM, "ca.pem", "ca-key.pem")
			if err != nil {
				t.Fatal(err)
			}
			cert, err := NewIssuer(ca, IssuerOptions{}).Certificate(context.Background(), "api.example.test")
			if err != nil {
				t.Fatal(err)
			}
			if len(cert.Certificate) != tc.want {
				t.Fatalf("%d certificates sent, want %d", len(cert.Certificate), tc.want)
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			inters := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(c)
			}
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "api.example.test"})
			if err != nil {
				t.Fatalf("verify against the root: %v", err)
			}
			if c := chains[0]; len(c) < 2 || !c[1].Equal(tc.chainTo) {
				t.Fatalf("leaf's issuer in the verified chain is not the CA")
			}
		})
	}
}
