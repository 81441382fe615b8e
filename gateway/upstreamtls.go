package gateway

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
)

// minUpstreamRSABits is the smallest RSA key the gateway accepts in an
// upstream's certificate chain. crypto/x509 accepts 1024-bit keys; the
// CA/Browser Forum baseline and NIST SP 800-131A have required 2048 since
// 2014, and a 1024-bit key is within reach of a well-funded attacker, so
// a credential is not sent under one.
const minUpstreamRSABits = 2048

// upstreamTLS is the TLS client configuration of every connection to a
// destination (the one place it is built): verified against trust's
// roots, TLS 1.2 or later, and checked further by trust.verify.
func upstreamTLS(trust *upstreamTrust, sessions tls.ClientSessionCache, protos []string) *tls.Config {
	return &tls.Config{
		RootCAs:            trust.roots,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         protos,
		ClientSessionCache: sessions,
		VerifyConnection:   trust.verify,
	}
}

// upstreamTrust is what upstream servers are verified against: the
// system roots and the certificates of upstream.ca_bundle, as read from
// bundle with content digest. Each reload of the bundle makes a new one,
// with pools of its own (newUpstreamGeneration).
type upstreamTrust struct {
	roots  *x509.CertPool
	bundle string
	digest [32]byte
	// next is the trust that replaced this one; nil while in force.
	next atomic.Pointer[upstreamTrust]
}

// current is the trust in force: t or the one that replaced it.
func (t *upstreamTrust) current() *upstreamTrust {
	for n := t.next.Load(); n != nil; n = t.next.Load() {
		t = n
	}
	return t
}

// verify is every upstream handshake's VerifyConnection, after crypto/tls
// verified the chain against t's roots: verifyUpstream's checks, and, when
// t was replaced by a reload of upstream.ca_bundle since, verification
// against the trust in force too. A handshake a pool of a retired
// generation still makes — a transport's retry of a request that was in
// flight at the reload, a new HTTP/2 connection for it — reaches only a
// server both trusts accept: nothing is sent under a trust withdrawn.
func (t *upstreamTrust) verify(cs tls.ConnectionState) error {
	if err := verifyUpstream(cs); err != nil {
		return err
	}
	cur := t.current()
	if cur == t || len(cs.PeerCertificates) == 0 {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: cur.roots, Intermediates: inter, DNSName: cs.ServerName})
	if err != nil {
		return fmt.Errorf("gateway: upstream certificate not trusted since upstream.ca_bundle was reloaded: %w", err)
	}
	return verifyUpstream(tls.ConnectionState{VerifiedChains: chains})
}

// weakCertError is a verified upstream chain the gateway still refuses.
type weakCertError struct{ why string }

func (e *weakCertError) Error() string { return "gateway: upstream certificate refused: " + e.why }

// verifyUpstream refuses what crypto/x509 verifies but a credential should
// not be sent under: an RSA key under minUpstreamRSABits anywhere in the
// chain the server sent, and a leaf that is itself a CA certificate signed
// by another (a CA's key serving a site; a self-signed certificate the
// operator put in upstream.ca_bundle, a chain of one, stays accepted). It
// runs after crypto/tls verified the chain and the name, on full and
// resumed handshakes alike, before any request byte is written.
func verifyUpstream(cs tls.ConnectionState) error {
	for _, chain := range cs.VerifiedChains {
		if err := checkChain(chain); err != nil {
			return err
		}
	}
	return nil
}

func checkChain(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return nil
	}
	if leaf := chain[0]; leaf.IsCA && len(chain) > 1 {
		return &weakCertError{why: fmt.Sprintf("the server's certificate (%q) is a CA certificate (basic constraints CA:TRUE), not a server certificate", leaf.Subject.String())}
	}
	// The last certificate is the trust anchor the operator chose (system
	// roots, upstream.ca_bundle); what the server sent is checked.
	sent := chain
	if len(chain) > 1 {
		sent = chain[:len(chain)-1]
	}
	for _, c := range sent {
		if k, ok := c.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < minUpstreamRSABits {
			return &weakCertError{why: fmt.Sprintf("the certificate %q has a %d-bit RSA key; the gateway needs at least %d bits", c.Subject.String(), k.N.BitLen(), minUpstreamRSABits)}
		}
	}
	return nil
}

// isTLSHandshakeError reports whether err is a failed TLS handshake with
// the upstream for another reason than its certificate: an alert the
// server sent (no common protocol version, cipher suite or ALPN
// protocol), a protocol the gateway refused (TLS 1.0/1.1, renegotiation,
// an ALPN protocol it did not offer), a server that does not speak TLS.
// crypto/tls's own failures are plain errors starting "tls: ", which is
// how they are told apart.
func isTLSHandshakeError(err error) bool {
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	var oe *net.OpError
	switch {
	case errors.As(err, &rh), errors.As(err, &alert):
		return true
	case errors.As(err, &oe) && oe.Op == "remote error":
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.HasPrefix(e.Error(), "tls: ") {
			return true
		}
	}
	return false
}

// tlsHandshakeWhy says why a handshake failed and what to change.
func tlsHandshakeWhy(err error) string {
	var rh tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &rh):
		return "the server did not answer with TLS (is it plain HTTP on this port?)"
	case isNoALPN(err):
		return "the server shares no application protocol with the gateway, which offered http/1.1 and h2: " + msg
	case strings.Contains(msg, "protocol version"):
		return fmt.Sprintf("the server and the gateway share no TLS version (the gateway speaks TLS 1.2 and 1.3 only; the server must too): %s", msg)
	case strings.Contains(msg, "renegotiation"):
		return fmt.Sprintf("the server asked for TLS renegotiation, which the gateway refuses: %s", msg)
	}
	return msg
}
