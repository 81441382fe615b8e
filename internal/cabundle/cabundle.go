// Package cabundle parses the PEM files that name trusted CAs: those
// that issue client certificates (tls.client_ca, admin.tls.client_ca,
// identity.mtls.bundles; Parse) and the roots servers are verified
// against (upstream.ca_bundle, cache.redis.tls.ca, ca_file settings;
// ParseRoots). It exists so that these settings accept the same files
// and refuse the same mistakes in the same words: a block that does not
// decode or parse, one that holds something other than a certificate,
// no certificate, and (client CAs only) a certificate that is not a
// CA's, such as the client's or the server's own.
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
// least one certificate and only CERTIFICATE blocks, each of which must
// decode and parse, and every certificate must be a CA's: basic
// constraints CA:TRUE, or an X.509 v1 self-signed root (which predates
// basic constraints). A leaf in the bundle would be trusted only as
// itself, which is never what a bundle of CAs means, so it is refused
// with the fix rather than accepted.
func Parse(data []byte) ([]*x509.Certificate, error) { return parse(data, checkCA) }

// ParseRoots returns the certificates of a PEM bundle of roots a client
// verifies servers against (upstream.ca_bundle, cache.redis.tls.ca, a
// provider's ca_file, an OTLP endpoint's ca). It refuses what Parse
// refuses (a block that does not decode or parse, a block that is not a
// CERTIFICATE, no certificate at all) except a leaf: a server's own
// self-signed certificate pinned as a root is a documented use there.
// x509.CertPool.AppendCertsFromPEM, which these settings used, skips
// every such block silently as long as one certificate parses.
func ParseRoots(data []byte) ([]*x509.Certificate, error) { return parse(data, nil) }

// pemBegin starts every PEM block; splitting on it finds the blocks that
// pem.Decode would skip (a damaged one is passed over in silence).
var pemBegin = []byte("-----BEGIN")

// parse reads data block by block: the text before, between and after
// blocks is ignored (bundles carry comments), but every block must be a
// CERTIFICATE that decodes, parses and passes check (when not nil).
func parse(data []byte, check func(*x509.Certificate) error) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for n := 1; ; n++ {
		i := bytes.Index(data, pemBegin)
		if i < 0 {
			break
		}
		block := data[i:]
		data = nil
		if j := bytes.Index(block[len(pemBegin):], pemBegin); j >= 0 {
			block, data = block[:len(pemBegin)+j], block[len(pemBegin)+j:]
		}
		b, _ := pem.Decode(block)
		if b == nil {
			return nil, fmt.Errorf("PEM block %d does not decode (a damaged or truncated block: check its BEGIN and END lines and its base64, or remove it)", n)
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q PEM block (block %d); a CA bundle holds only CERTIFICATE blocks: remove it", b.Type, n)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (PEM block %d) does not parse: %w; replace it with the CA's PEM certificate or remove it", n, n, err)
		}
		if check != nil {
			if err := check(c); err != nil {
				return nil, fmt.Errorf("certificate %d (subject %q): %w", n, c.Subject.String(), err)
			}
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

// AddRoots adds ParseRoots's certificates to pool (the system roots, or
// a new pool) and returns it, or ParseRoots's error with pool unchanged.
func AddRoots(pool *x509.CertPool, data []byte) (*x509.CertPool, error) {
	certs, err := ParseRoots(data)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
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
