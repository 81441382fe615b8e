// Package testpki makes the throw-away certificate authorities, server
// leaves and client certificates that tests and the benchmark need: origin
// CAs, client CAs for the mtls factor, SPIFFE X.509-SVIDs. Everything is
// ECDSA P-256, the key type credgate's interception CA uses, so benchmark
// baselines and the gateway pay the same handshake cost. It is for tests
// and benchmarks only; nothing in the gateway imports it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/credgate/credgate/internal/cabundle"
)

// Authority is a certificate authority held in memory.
type Authority struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
	// CertPEM and KeyPEM are the PEM encodings of Cert and Key (PKCS #8).
	CertPEM, KeyPEM []byte
}

// NewAuthority generates a self-signed CA valid for one day.
func NewAuthority(name string) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testpki: generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"credgate bench"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parse CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testpki: marshal CA key: %w", err)
	}
	return &Authority{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// Leaf issues a server certificate for the given DNS names and IP
// addresses, valid for one day.
func (a *Authority) Leaf(names ...string) (tls.Certificate, error) {
	return a.issue(names[0], names, nil, x509.ExtKeyUsageServerAuth)
}

// ClientLeaf issues a client certificate with common name cn and the given
// URI SANs (SPIFFE IDs), valid for one day.
func (a *Authority) ClientLeaf(cn string, uris ...string) (tls.Certificate, error) {
	return a.issue(cn, nil, uris, x509.ExtKeyUsageClientAuth)
}

// SVID issues an X.509-SVID the way SPIRE does: the SPIFFE ID as the
// only URI SAN, usable for both server and client authentication, plus
// optional DNS names and IP addresses; valid for one day.
func (a *Authority) SVID(spiffeID string, names ...string) (tls.Certificate, error) {
	return a.issue(spiffeID, names, []string{spiffeID}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// PEM returns a certificate issued by Leaf or ClientLeaf as PEM files'
// contents: the certificate chain and the PKCS #8 key.
func PEM(c tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: encode key: %w", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

func (a *Authority) issue(cn string, names, uris []string, eku ...x509.ExtKeyUsage) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: generate leaf key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("testpki: URI SAN %q: %w", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: create leaf for %s: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: parse leaf: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// TLSCertificate returns the CA itself as a tls.Certificate, the form
// goproxy wants for signing.
func (a *Authority) TLSCertificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(a.CertPEM, a.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: load CA key pair: %w", err)
	}
	c.Leaf = a.Cert
	return c, nil
}

// Pool returns a certificate pool holding only this CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// WriteFiles writes the CA as cert and key PEM files into dir (key 0600)
// and returns their paths.
func (a *Authority) WriteFiles(dir, prefix string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, prefix+".pem")
	keyPath = filepath.Join(dir, prefix+"-key.pem")
	if err := os.WriteFile(certPath, a.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("testpki: write %s: %w", certPath, err)
	}
	if err := os.WriteFile(keyPath, a.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("testpki: write %s: %w", keyPath, err)
	}
	return certPath, keyPath, nil
}

// LoadAuthority reads a CA written by WriteFiles (or any PEM certificate
// and PKCS #8 / SEC 1 ECDSA key pair).
func LoadAuthority(certPath, keyPath string) (*Authority, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("testpki: read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("testpki: read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("testpki: load CA %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("testpki: parse CA %s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("testpki: CA key %s is %T, want ECDSA", keyPath, pair.PrivateKey)
	}
	return &Authority{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ReadPool reads a PEM bundle into a new certificate pool.
func ReadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testpki: read bundle: %w", err)
	}
	p, err := cabundle.AddRoots(x509.NewCertPool(), b)
	if err != nil {
		return nil, fmt.Errorf("testpki: %s: %w", path, err)
	}
	return p, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testpki: serial number: %w", err)
	}
	return n, nil
}
