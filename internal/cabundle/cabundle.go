// Package cabundle parses the PEM files that name the CAs trusted to
// issue client certificates (tls.client_ca, admin.tls.client_ca,
// identity.mtls.bundles). It exists so that the three settings accept
// the same files and refuse the same mistakes in the same words: a file
// that holds something other than certificates, none, or a certificate
// that is not a CA's, such as the client's or the server's own.
package cabundle

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNotCA marks a certificate in a CA bundle that is not a CA
// certificate (a leaf given where its issuer belongs).
var ErrNotCA = errors.New("not a CA certificate")

// Parse returns the certificates of a PEM CA bundle. It must hold at
// least one certificate and only CERTIFICATE blocks, and every
// certificate must be a CA's: basic constraints CA:TRUE, or an X.509 v1
// self-signed root (which predates basic constraints). A leaf in the
// bundle would be trusted only as itself, which is never what a bundle
// of CAs means, so it is refused with the fix rather than accepted.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q PEM block; a CA bundle holds only CERTIFICATE blocks", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		if err := checkCA(c); err != nil {
			return nil, fmt.Errorf("certificate %d (subject %q): %w", len(out)+1, c.Subject.String(), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return out, nil
}

// Pool is Parse's certificates as a pool.
func Pool(data []byte) (*x509.CertPool, error) {
	certs, err := Parse(data)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// checkCA says why c is not a CA certificate, or nil.
func checkCA(c *x509.Certificate) error {
	why := "its basic constraints say CA:FALSE"
	switch {
	case c.BasicConstraintsValid && c.IsCA:
		return nil
	case !c.BasicConstraintsValid && c.Version < 3 && selfSigned(c):
		return nil // an X.509 v1 root
	case !c.BasicConstraintsValid:
		why = "it has no basic constraints"
	}
	return fmt.Errorf("%w (%s): this file must hold the certificates of the CAs that issue the client certificates, not a client's or server's own certificate; put the issuing CA's certificate (the last of the client certificate's chain, CA:TRUE) in the file instead", ErrNotCA, why)
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
