package gateway

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"sync/atomic"
)

// clientRoots is the set of CA certificates a listener's client_ca file
// (tls.client_ca, admin.tls.client_ca) holds now, by the SHA-256 of each
// certificate. A client certificate chain is verified by crypto/tls once,
// at the handshake, against the roots in force then; the connection then
// carries that chain (tls.ConnectionState.VerifiedChains) for as long as
// it stays open, and a keep-alive connection can stay open for days. A
// CA removed from the file must stop vouching for the connections it
// verified, as it does for new handshakes and resumed sessions: every
// request on such a connection checks that the root of a verified chain
// is still in the set. The zero value and nil trust every chain (no
// client_ca: nothing to withdraw).
type clientRoots struct {
	set atomic.Pointer[map[[sha256.Size]byte]struct{}]
}

// store replaces the set with the certificates of pemData, the client_ca
// file's content as it was applied to the listener (x509.CertPool's
// AppendCertsFromPEM takes the same CERTIFICATE blocks and skips the
// others, as this does). It reports whether a certificate of the set it
// replaces is not in the new one (a CA was removed).
func (c *clientRoots) store(pemData []byte) (removed bool) {
	set := map[[sha256.Size]byte]struct{}{}
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || len(b.Headers) != 0 {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			continue
		}
		set[sha256.Sum256(b.Bytes)] = struct{}{}
	}
	if old := c.set.Swap(&set); old != nil {
		for k := range *old {
			if _, ok := set[k]; !ok {
				return true
			}
		}
	}
	return false
}

// trusts reports whether one of chains ends in a root the client_ca file
// holds now; true when c is nil or has no set, and when there is no
// chain (nothing was verified by the listener).
func (c *clientRoots) trusts(chains [][]*x509.Certificate) bool {
	if c == nil || len(chains) == 0 {
		return true
	}
	set := c.set.Load()
	if set == nil {
		return true
	}
	for _, ch := range chains {
		if len(ch) == 0 {
			continue
		}
		if _, ok := (*set)[sha256.Sum256(ch[len(ch)-1].Raw)]; ok {
			return true
		}
	}
	return false
}
