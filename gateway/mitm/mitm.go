// Package mitm holds the gateway's interception CA and issues the per-host
// leaf certificates the gateway presents to clients on intercepted
// connections.
//
// The CA is an ECDSA P-256 key and a self-signed certificate
// (`credgate ca init` writes them with WriteCA). Leaf certificates are
// ECDSA P-256, valid for one host (a DNS name or an IP address), short-
// lived, and kept in a bounded least-recently-used cache; concurrent first
// handshakes for one host sign one certificate. A handshake sends the leaf
// alone when the CA is self-signed (the client holds it as a trust anchor)
// and the leaf with the CA certificate, and the issuers the CA file lists
// after it, when the CA is an intermediate. A CA loads only if a client
// would accept the leaves it signs.
package mitm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/fairlru"
)

// File names WriteCA writes into its directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// Defaults for Issuer.
const (
	DefaultLeafTTL       = 24 * time.Hour
	DefaultLeafCacheSize = 1024
	// caValidity is the lifetime of a CA written by WriteCA.
	caValidity = 5 * 365 * 24 * time.Hour
)

// CAOptions shape a CA written by WriteCAWith.
type CAOptions struct {
	// Permit, when not empty, limits what the CA can sign (X.509 name
	// constraints, critical): DNS domains ("example.com" covers it and
	// every name below it) and IP prefixes ("10.0.0.0/8"). Without a
	// prefix no IP address is permitted. Clients refuse a leaf outside
	// them, whoever holds the key; the gateway refuses to issue one.
	Permit []string
}

// parsePermit splits CAOptions.Permit into DNS domains and IP prefixes.
func parsePermit(permit []string) (domains []string, ips []*net.IPNet, err error) {
	for _, p := range permit {
		if pfx, perr := netip.ParsePrefix(p); perr == nil {
			pfx = pfx.Masked()
			ips = append(ips, &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())})
			continue
		}
		if _, aerr := netip.ParseAddr(p); aerr == nil {
			return nil, nil, fmt.Errorf("mitm: permit %q: an IP address needs a prefix length (%s/32 or /128)", p, p)
		}
		d := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(p, "."), "."))
		if !canonical.HostName(d) || !strings.Contains(d, ".") {
			return nil, nil, fmt.Errorf("mitm: permit %q: not a DNS domain (like example.com, in ASCII: xn-- for international names) nor an IP prefix (like 10.0.0.0/8)", p)
		}
		domains = append(domains, d)
	}
	return domains, ips, nil
}

// WriteCA creates a new CA in dir: ca.pem (the certificate, 0644) and
// ca-key.pem (the PKCS#8 private key, 0600). It never overwrites an
// existing file. It returns the two paths.
func WriteCA(dir string) (certPath, keyPath string, err error) {
	return WriteCAWith(dir, CAOptions{})
}

// WriteCAWith is WriteCA with options.
func WriteCAWith(dir string, opts CAOptions) (certPath, keyPath string, err error) {
	domains, ips, err := parsePermit(opts.Permit)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("mitm: %s already exists; remove it or choose another directory", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("mitm: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("mitm: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "credgate interception CA", Organization: []string{"credgate"}, OrganizationalUnit: []string{host}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if len(opts.Permit) > 0 {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = domains
		tmpl.PermittedIPRanges = ips
		if len(ips) == 0 {
			// No IP permitted: an absent IP constraint would permit all.
			tmpl.ExcludedIPRanges = []*net.IPNet{
				{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("mitm: create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("mitm: encode CA key: %w", err)
	}
	// The key first, exclusively and 0600, so that a failure never leaves
	// a certificate without its key.
	if err := writeExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeExclusive(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("mitm: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("mitm: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("mitm: write %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("mitm: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// CA is a loaded interception CA.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// leafKey is shared by every leaf: generating a P-256 key per host
	// costs more than signing, and the leaf key never leaves the process.
	leafKey *ecdsa.PrivateKey
	// chain is what a handshake sends after the leaf: nothing for a
	// self-signed CA (a client can only trust it as a trust anchor, which
	// it already holds), the CA certificate for an intermediate CA, then
	// the issuers the CA file lists after it, but a self-signed root.
	chain [][]byte
	// anchor is the CA file's last certificate, what clients must trust
	// (Cert itself, or the root the file lists above it).
	anchor *x509.Certificate
	// notBefore and notAfter bound the validity of the certificates of
	// the file: leaves are signed within them.
	notBefore, notAfter time.Time
	// roots hold the CA file's last certificate (Cert, or the root above
	// it) and inters the ones below it: every leaf is verified against
	// them before it is handed out (name constraints, path lengths,
	// validity).
	roots, inters *x509.CertPool
	// leafSKI is the subject key identifier of leafKey (RFC 5280
	// 4.2.1.2, method 1).
	leafSKI []byte
}

// ErrNotPermitted is the error of a leaf the CA's name constraints do not
// permit (`credgate ca init --permit`, or a CA from another PKI).
var ErrNotPermitted = errors.New("the interception CA's name constraints do not permit this host")

// ErrBadHost is the error of a host no leaf may name: a wildcard, an
// empty label, a character no host name has.
var ErrBadHost = errors.New("not a host name a certificate can name")

// LoadCA reads a CA certificate and its private key (PKCS#8, SEC 1 "EC
// PRIVATE KEY"), and checks that they belong together and that the
// certificate is a CA that is valid now. Only ECDSA keys are supported.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := cfgfile.Read(certPath)
	if err != nil {
		return nil, fmt.Errorf("mitm: CA certificate: %w", err)
	}
	keyPEM, err := cfgfile.ReadSecret(keyPath)
	if err != nil {
		return nil, fmt.Errorf("mitm: CA key: %w", err)
	}
	return ParseCA(certPEM, keyPEM, certPath, keyPath)
}

// ParseCA is LoadCA on file contents already read; certName and keyName
// name them in errors.
func ParseCA(certPEM, keyPEM []byte, certName, keyName string) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error names the mismatch or the PEM problem, never key bytes.
		return nil, fmt.Errorf("mitm: CA %s with key %s: %w", certName, keyName, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("mitm: CA certificate %s: %w", certName, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("mitm: CA key %s: only ECDSA keys are supported (credgate ca init writes one)", keyName)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("mitm: %s is not a CA certificate (needs basic constraints CA:true and keyCertSign)", certName)
	}
	now := time.Now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("mitm: CA certificate %s is not valid now (valid %s to %s)", certName,
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mitm: generate leaf key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&leafKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("mitm: encode leaf key: %w", err)
	}
	var pk struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &pk); err != nil {
		return nil, fmt.Errorf("mitm: encode leaf key: %w", err)
	}
	ski := sha1.Sum(pk.PublicKey.Bytes)
	ca := &CA{Cert: cert, key: key, leafKey: leafKey, roots: x509.NewCertPool(), leafSKI: ski[:]}
	if err := ca.setChain(pair.Certificate, certName); err != nil {
		return nil, err
	}
	// A CA whose every leaf a client refuses — an extended key usage
	// without serverAuth, a critical extension no client knows — is
	// refused now, naming the file, rather than at every CONNECT (each a
	// 502). The probe leaf names no host: the CA's name constraints are
	// per host and are checked per CONNECT (ErrNotPermitted).
	_, probe, _, err := ca.signLeaf("", now, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("mitm: CA %s with key %s: %w", certName, keyName, err)
	}
	if _, err := probe.Verify(ca.verifyOptions("", now)); err != nil {
		return nil, fmt.Errorf("mitm: CA certificate %s cannot issue server certificates clients accept: %w; %s", certName, err, caFix(cert))
	}
	return ca, nil
}

// caFix says how to mend a CA whose leaves do not verify.
func caFix(cert *x509.Certificate) string {
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		return "its extended key usage must include serverAuth (or be absent); issue a CA without the extension, or run credgate ca init"
	}
	return "issue another CA, or run credgate ca init"
}

// setChain takes the certificates of the CA file (ders: the CA first,
// then, optionally, its issuers in order up to a root). A handshake sends
// the leaf with the CA and those issuers, the root left out; every leaf is
// verified up to the file's last certificate, so the issuers' constraints
// (path length, name constraints, extended key usage) are checked too.
// A certificate that does not issue the one before it is refused: a
// client would be sent a chain that does not chain.
func (ca *CA) setChain(ders [][]byte, certName string) error {
	certs := []*x509.Certificate{ca.Cert}
	for i, der := range ders[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("mitm: CA certificate %s, certificate %d: %w", certName, i+2, err)
		}
		prev := certs[len(certs)-1]
		if !bytes.Equal(prev.RawIssuer, c.RawSubject) || prev.CheckSignatureFrom(c) != nil {
			return fmt.Errorf("mitm: CA certificate %s: certificate %d (%q) did not issue certificate %d (%q); list the CA first, then each issuer in order (or the CA alone)",
				certName, i+2, c.Subject.String(), i+1, prev.Subject.String())
		}
		certs = append(certs, c)
	}
	top := certs[len(certs)-1]
	ca.anchor, ca.notBefore, ca.notAfter = top, ca.Cert.NotBefore, ca.Cert.NotAfter
	for _, c := range certs[1:] {
		// A leaf is valid only while every certificate above it is.
		if c.NotBefore.After(ca.notBefore) {
			ca.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(ca.notAfter) {
			ca.notAfter = c.NotAfter
		}
	}
	ca.roots.AddCert(top)
	if len(certs) > 1 {
		ca.inters = x509.NewCertPool()
		for _, c := range certs[:len(certs)-1] {
			ca.inters.AddCert(c)
		}
	}
	for _, c := range certs {
		if c != top || !selfSigned(c) {
			ca.chain = append(ca.chain, c.Raw)
		}
	}
	return nil
}

// verifyOptions are what a leaf for host is verified with before it is
// handed out: what a client trusting the top of the CA file checks.
func (ca *CA) verifyOptions(host string, now time.Time) x509.VerifyOptions {
	return x509.VerifyOptions{DNSName: host, Roots: ca.roots, Intermediates: ca.inters, CurrentTime: now}
}

// selfSigned reports whether cert is a root: issued by its own subject and
// signed by its own key. Sending a root in a handshake's chain buys the
// client nothing (RFC 8446 section 4.4.2 lets it be left out) and costs it:
// crypto/x509 then finds the leaf's issuer twice, among the roots and the
// intermediates, and checks the leaf's signature against both.
func selfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil
}

// IssuerOptions configure an Issuer. Zero fields take the defaults.
type IssuerOptions struct {
	// LeafTTL is each leaf certificate's lifetime (DefaultLeafTTL).
	LeafTTL time.Duration
	// CacheSize bounds the cached leaf certificates (DefaultLeafCacheSize).
	// The cache is shared fairly between owners (workloads): a leaf
	// counts against the owner whose handshake had it signed, and a full
	// cache evicts the least recently used leaf of the owner holding the
	// most (internal/fairlru). So one owner that opens tunnels to many
	// names evicts another's leaves only while it holds fewer than that
	// one; beyond, its new leaves replace its own. An owner alone uses
	// the whole cache as an LRU.
	CacheSize int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Issuer signs and caches leaf certificates. It is safe for concurrent use.
type Issuer struct {
	opts IssuerOptions
	sf   singleflight.Group

	// signed counts the leaves signed (Stats).
	signed atomic.Uint64

	mu  sync.Mutex
	ca  *CA
	gen int // incremented by SetCA; leaves of older generations are not cached
	// leaves are keyed by host; each counts against the owner whose
	// handshake put it in the cache, and keeps that owner while it stays
	// (a hit by another owner, or a renewal, does not move it), so that
	// no owner can take another's leaves into its count.
	leaves *fairlru.Cache[string, *leaf, string]
}

type leaf struct {
	cert    *tls.Certificate
	renewAt time.Time
}

// NewIssuer returns an Issuer signing with ca.
func NewIssuer(ca *CA, opts IssuerOptions) *Issuer {
	if opts.LeafTTL <= 0 {
		opts.LeafTTL = DefaultLeafTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultLeafCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Issuer{ca: ca, opts: opts, leaves: fairlru.New[string, *leaf, string](opts.CacheSize)}
}

// Certificate returns a leaf certificate for host (a DNS name or an IP
// literal, without port), from the cache when one is there and not in the
// last fifth of its lifetime. owner is who asks (the workload's name; ""
// for anonymous callers and offline tools): a leaf signed now counts
// against its count in the cache (IssuerOptions.CacheSize).
func (is *Issuer) Certificate(ctx context.Context, owner, host string) (*tls.Certificate, error) {
	host, err := leafName(host)
	if err != nil {
		return nil, err
	}
	now := is.opts.Now()
	is.mu.Lock()
	if l, ok := is.leaves.Get(host); ok && now.Before(l.renewAt) {
		is.mu.Unlock()
		return l.cert, nil
	}
	is.mu.Unlock()

	// One signature per host at a time: the owner of the first caller
	// is the leaf's.
	ch := is.sf.DoChan(host, func() (any, error) { return is.issue(owner, host) })
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("mitm: leaf certificate for %s: %w", host, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*tls.Certificate), nil
	}
}

// SetCA replaces the signing CA (a rotated interception CA) and drops
// every cached leaf, so clients see certificates from the new CA at their
// next handshake.
func (is *Issuer) SetCA(ca *CA) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.ca = ca
	is.gen++
	is.leaves.Clear()
}

// CACertificate returns what clients must trust for the leaves signed
// now: the CA certificate, or the root the CA file lists above it.
func (is *Issuer) CACertificate() *x509.Certificate {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.ca.anchor
}

// IssuerStats is what an Issuer reports for metrics.
type IssuerStats struct {
	// CANotAfter is the end of the signing CA's validity (or of an
	// issuer's the CA file lists, when that ends first): past it no leaf
	// is signed.
	CANotAfter time.Time
	// Signed counts the leaf certificates signed since the Issuer was
	// made (cache misses, renewals, leaves of a CA replaced meanwhile).
	Signed uint64
}

// Stats returns the Issuer's figures now.
func (is *Issuer) Stats() IssuerStats {
	is.mu.Lock()
	defer is.mu.Unlock()
	return IssuerStats{CANotAfter: is.ca.notAfter, Signed: is.signed.Load()}
}

// Len returns the number of cached leaf certificates.
func (is *Issuer) Len() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.leaves.Len()
}

// Held returns the number of cached leaf certificates owner holds.
func (is *Issuer) Held(owner string) int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.leaves.Held(owner)
}

// leafName is host as a leaf names it: a DNS name in lower case without
// a trailing dot (ASCII: an international name arrives as xn-- labels),
// or an IP address in its canonical form. Anything else — a wildcard, an
// empty label, a zone, a character no host name has — is refused: a leaf
// never covers more than the one host asked for.
func leafName(host string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	if h == "" {
		return "", fmt.Errorf("mitm: leaf certificate for an empty host name: %w", ErrBadHost)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("mitm: leaf certificate for %q: %w (an IP address with a zone)", host, ErrBadHost)
		}
		return ip.String(), nil
	}
	h = strings.ToLower(h)
	if !canonical.HostName(h) {
		return "", fmt.Errorf("mitm: leaf certificate for %q: %w (letters, digits, '-' and '_' in dot-separated labels; international names as xn-- labels; no wildcard)", host, ErrBadHost)
	}
	return h, nil
}

// leafSkew is how far before now a leaf's validity starts, for clients
// whose clocks are behind.
const leafSkew = 5 * time.Minute

// signLeaf signs a leaf certificate for host (leafName's form; "" for a
// leaf naming no host, which only ParseCA's check makes) valid from
// leafSkew before now for ttl, both within the CA's validity.
func (ca *CA) signLeaf(host string, now time.Time, ttl time.Duration) (der []byte, parsed *x509.Certificate, notAfter time.Time, err error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	// Within the CA's validity: some clients refuse a leaf valid outside
	// its issuer's.
	notBefore := now.Add(-leafSkew)
	if notBefore.Before(ca.notBefore) {
		notBefore = ca.notBefore
	}
	notAfter = now.Add(ttl)
	if notAfter.After(ca.notAfter) {
		notAfter = ca.notAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"credgate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          ca.leafSKI,
	}
	if len(host) <= 64 { // ub-common-name (RFC 5280); the SAN is what clients check
		tmpl.Subject.CommonName = host
	}
	if ip, ipErr := netip.ParseAddr(host); ipErr == nil {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else if host != "" {
		tmpl.DNSNames = []string{host}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &ca.leafKey.PublicKey, ca.key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("mitm: sign leaf certificate for %s: %w", host, err)
	}
	parsed, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("mitm: parse leaf certificate for %s: %w", host, err)
	}
	return der, parsed, notAfter, nil
}

func (is *Issuer) issue(owner, host string) (*tls.Certificate, error) {
	is.mu.Lock()
	ca, gen := is.ca, is.gen
	is.mu.Unlock()
	now := is.opts.Now()
	if now.After(ca.notAfter) || now.Before(ca.notBefore) {
		return nil, fmt.Errorf("mitm: leaf certificate for %s: the interception CA is not valid now (valid %s to %s); rotate it: credgate ca init --out DIR and point ca.cert and ca.key at the new files",
			host, ca.notBefore.UTC().Format(time.RFC3339), ca.notAfter.UTC().Format(time.RFC3339))
	}
	der, parsed, notAfter, err := ca.signLeaf(host, now, is.opts.LeafTTL)
	if err != nil {
		return nil, err
	}
	is.signed.Add(1)
	// What a client will check, checked first: the CA's name constraints
	// (ca init --permit, or those of a CA from another PKI) above all.
	if _, err := parsed.Verify(ca.verifyOptions(host, now)); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.CANotAuthorizedForThisName {
			return nil, fmt.Errorf("mitm: leaf certificate for %s: %w (%s); widen it with a new CA (credgate ca init --permit), or make the rule action: tunnel", host, ErrNotPermitted, inv.Detail)
		}
		return nil, fmt.Errorf("mitm: leaf certificate for %s does not verify against the interception CA: %w", host, err)
	}
	cert := &tls.Certificate{
		Certificate: append([][]byte{der}, ca.chain...),
		PrivateKey:  ca.leafKey,
		Leaf:        parsed,
	}
	life := notAfter.Sub(now)
	renewAt := now.Add(life * 4 / 5)

	is.mu.Lock()
	defer is.mu.Unlock()
	if gen != is.gen {
		return cert, nil // signed by a CA replaced meanwhile: use once, do not cache
	}
	// A renewal keeps the leaf's owner (fairlru.Cache.Add).
	is.leaves.Add(host, owner, &leaf{cert: cert, renewAt: renewAt})
	return cert, nil
}
