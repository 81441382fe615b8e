package identity

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/credgate/credgate/internal/cabundle"
)

// mtlsVerifier produces the mtls factor from a client certificate: one
// the listener verified (Evidence.VerifiedChains), or one it verifies
// itself against the configured trust bundles (Evidence.PeerCertificates).
type mtlsVerifier struct {
	trustDomains  []spiffeid.TrustDomain
	requireSPIFFE bool
	now           func() time.Time
	log           *slog.Logger
	// changed is called after the bundles changed (WithOnChange): a
	// chain verified before may no longer verify.
	changed func()

	mu    sync.Mutex // guards certs and wlBundles
	certs [][]*x509.Certificate
	// wlBundles are the X.509 bundles of the Workload API's last update.
	wlBundles *x509bundle.Set
	domains   []spiffeid.TrustDomain // per bundle; zero: any
	state     atomic.Pointer[trustState]
	// reloaders re-read the bundle files; tests call load directly.
	reloaders []*fileReloader
	// wl streams bundles (and the gateway's SVID) from the SPIFFE
	// Workload API; nil when not configured.
	wl   *WorkloadAPISource
	stop []func() error
}

// trustState is the merged content of the bundles in force.
type trustState struct {
	// any verifies certificates of bundles without a trust domain.
	any *x509.CertPool
	// domains holds the bundles restricted to a trust domain.
	domains *x509bundle.Set
	// all is every CA, for the listener's acceptable-CA list.
	all  *x509.CertPool
	size int
	// verified remembers the chains verified against this state, so that
	// the requests of one connection (and the connections of one client)
	// do not pay for the signature checks again; a new state starts empty.
	verified *chainCache
}

// maxVerifiedChains bounds a chainCache; when full it starts over.
const maxVerifiedChains = 4096

// chainCache maps the SHA-256 of the certificates a client sent to the
// chain they verified to and the factor it made. Only successes are kept,
// and the validity period is checked again on every use. The factor is
// shared by every request that hits it, like the jwt verifier's cached
// factors: nobody modifies a Factor's Attributes.
type chainCache struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]verifiedChain
}

type verifiedChain struct {
	chain  []*x509.Certificate
	factor *Factor
}

func newChainCache() *chainCache {
	return &chainCache{m: map[[sha256.Size]byte]verifiedChain{}}
}

func chainKey(certs []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range certs {
		h.Write(binary.BigEndian.AppendUint32(n[:0], uint32(len(c.Raw))))
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *chainCache) get(k [sha256.Size]byte) (verifiedChain, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *chainCache) put(k [sha256.Size]byte, e verifiedChain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxVerifiedChains {
		clear(c.m)
	}
	c.m[k] = e
}

// newMTLSVerifier loads the bundle files and, with cfg.WorkloadAPI, waits
// for the first update of the Workload API (bounded by its
// start_timeout and ctx).
func newMTLSVerifier(ctx context.Context, cfg MTLSConfig, o options) (*mtlsVerifier, error) {
	v := &mtlsVerifier{requireSPIFFE: cfg.RequireSPIFFE, now: o.now, log: o.log, changed: o.changed}
	for _, s := range cfg.TrustDomains {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, fmt.Errorf("identity: mtls: trust domain %q: %w", s, err)
		}
		v.trustDomains = append(v.trustDomains, td)
	}
	v.certs = make([][]*x509.Certificate, len(cfg.Bundles))
	v.domains = make([]spiffeid.TrustDomain, len(cfg.Bundles))
	var reloaders []*fileReloader
	for i, b := range cfg.Bundles {
		if b.TrustDomain != "" {
			td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
			if err != nil {
				return nil, fmt.Errorf("identity: mtls: bundle %s: trust domain %q: %w", b.File, b.TrustDomain, err)
			}
			v.domains[i] = td
		}
		r := newFileReloader(b.File, "trust bundle", cfg.ReloadInterval, o.log,
			func(data []byte) error { return v.setBundle(i, data) })
		if _, err := r.Load(); err != nil {
			return nil, fmt.Errorf("identity: mtls: %w", err)
		}
		reloaders = append(reloaders, r)
	}
	if cfg.WorkloadAPI != nil {
		wl, err := newWorkloadAPISource(ctx, *cfg.WorkloadAPI, o, v.setWorkloadBundles)
		if err != nil {
			return nil, err
		}
		v.wl = wl
		v.stop = append(v.stop, wl.Close)
	}
	v.rebuild()
	v.reloaders = reloaders
	for _, r := range reloaders {
		v.stop = append(v.stop, background(r.Run))
	}
	return v, nil
}

// setWorkloadBundles replaces the Workload API's bundles (called by the
// source on every update).
func (v *mtlsVerifier) setWorkloadBundles(set *x509bundle.Set) {
	v.mu.Lock()
	v.wlBundles = set
	v.mu.Unlock()
	v.rebuild()
	if v.changed != nil {
		v.changed()
	}
}

// setBundle replaces bundle i with the certificates in data.
func (v *mtlsVerifier) setBundle(i int, data []byte) error {
	certs, err := parsePEMCerts(data)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.certs[i] = certs
	v.mu.Unlock()
	v.rebuild()
	if v.changed != nil {
		v.changed()
	}
	return nil
}

func (v *mtlsVerifier) rebuild() {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &trustState{any: x509.NewCertPool(), domains: x509bundle.NewSet(), all: x509.NewCertPool(), verified: newChainCache()}
	add := func(td spiffeid.TrustDomain, c *x509.Certificate) {
		st.all.AddCert(c)
		st.size++
		if td.IsZero() {
			st.any.AddCert(c)
			return
		}
		b, ok := st.domains.Get(td)
		if !ok {
			b = x509bundle.New(td)
			st.domains.Add(b)
		}
		b.AddX509Authority(c)
	}
	for i, certs := range v.certs {
		for _, c := range certs {
			add(v.domains[i], c)
		}
	}
	// The Workload API's bundles (the agent's own trust domain and the
	// federated ones) verify SVIDs of their trust domain only, alongside
	// a PEM bundle of the same domain if one is configured.
	if v.wlBundles != nil {
		for _, b := range v.wlBundles.Bundles() {
			for _, c := range b.X509Authorities() {
				add(b.TrustDomain(), c)
			}
		}
	}
	v.state.Store(st)
}

// parsePEMCerts returns the certificates of a trust bundle, which must
// hold at least one, nothing but certificates, and only CAs' (cabundle).
func parsePEMCerts(data []byte) ([]*x509.Certificate, error) { return cabundle.Parse(data) }

// Kind implements Verifier.
func (v *mtlsVerifier) Kind() string { return KindMTLS }

// Verify implements Verifier.
func (v *mtlsVerifier) Verify(_ context.Context, ev Evidence) (*Factor, error) {
	now := v.now()
	var chain []*x509.Certificate
	switch {
	case len(ev.VerifiedChains) > 0 && len(ev.VerifiedChains[0]) > 0:
		// Verified by the listener at the handshake; the connection may
		// have outlived the certificate since.
		chain = ev.VerifiedChains[0]
		for _, c := range chain {
			if now.After(c.NotAfter) || now.Before(c.NotBefore) {
				return nil, fmt.Errorf("client certificate chain is outside its validity period (%s): %w", describeCert(c), ErrInvalid)
			}
		}
	case len(ev.PeerCertificates) > 0:
		return v.verifyPeer(ev.PeerCertificates, now)
	default:
		return nil, nil
	}
	return v.factor(chain)
}

// verifyPeer verifies the certificates a client sent (verifyChain) and
// makes the factor, remembering both for the trust state in force: a
// repeated chain costs a hash of the certificates and a check of their
// validity periods.
func (v *mtlsVerifier) verifyPeer(certs []*x509.Certificate, now time.Time) (*Factor, error) {
	st := v.state.Load()
	var k [sha256.Size]byte
	if st != nil && st.verified != nil {
		k = chainKey(certs)
		if e, ok := st.verified.get(k); ok {
			for _, c := range e.chain {
				if now.After(c.NotAfter) || now.Before(c.NotBefore) {
					return nil, fmt.Errorf("client certificate chain is outside its validity period (%s): %w", describeCert(c), ErrInvalid)
				}
			}
			return e.factor, nil
		}
	}
	chain, err := v.verifyChain(st, certs, now)
	if err != nil {
		return nil, err
	}
	f, err := v.factor(chain)
	if err != nil {
		return nil, err
	}
	if st != nil && st.verified != nil {
		st.verified.put(k, verifiedChain{chain: chain, factor: f})
	}
	return f, nil
}

// verifyChain verifies the certificates a client sent against the trust
// bundles of st. An X.509-SVID whose trust domain has its own bundle is
// verified against that bundle only.
func (v *mtlsVerifier) verifyChain(st *trustState, certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if st == nil || st.size == 0 {
		return nil, fmt.Errorf("a client certificate was presented but nothing verified it: set tls.client_ca on the listener, identity.mtls.bundles or identity.mtls.workload_api: %w", ErrInvalid)
	}
	leaf := certs[0]
	if hasSPIFFEURI(leaf) {
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return nil, fmt.Errorf("client certificate is not a valid X.509-SVID: %v: %w", err, ErrInvalid)
		}
		if st.domains.Has(id.TrustDomain()) {
			_, chains, err := x509svid.Verify(certs, st.domains, x509svid.WithTime(now))
			if err != nil {
				return nil, fmt.Errorf("X.509-SVID %s did not verify against the bundle of trust domain %s: %v: %w", id, id.TrustDomain(), err, ErrInvalid)
			}
			return chains[0], nil
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         st.any,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("client certificate %s did not verify: %v: %w", describeCert(leaf), err, ErrInvalid)
	}
	return chains[0], nil
}

// factor turns a verified chain into the mtls factor.
func (v *mtlsVerifier) factor(chain []*x509.Certificate) (*Factor, error) {
	leaf := chain[0]
	if err := checkClientLeaf(leaf); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(leaf.Raw)
	f := &Factor{Kind: KindMTLS, Attributes: map[string]string{
		AttrCertThumbprint: base64.RawURLEncoding.EncodeToString(sum[:]),
	}}
	for _, c := range chain {
		if f.Expires.IsZero() || c.NotAfter.Before(f.Expires) {
			f.Expires = c.NotAfter
		}
	}
	if hasSPIFFEURI(leaf) {
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return nil, fmt.Errorf("client certificate is not a valid X.509-SVID: %v: %w", err, ErrInvalid)
		}
		if len(v.trustDomains) > 0 && !slices.Contains(v.trustDomains, id.TrustDomain()) {
			return nil, fmt.Errorf("SPIFFE ID %s is of trust domain %s, which identity.mtls.trust_domains does not accept: %w", id, id.TrustDomain(), ErrInvalid)
		}
		f.Subject = id.String()
		f.Attributes[AttrSPIFFEID] = id.String()
		f.Attributes[AttrTrustDomain] = id.TrustDomain().Name()
		f.Attributes[AttrPath] = id.Path()
		return f, nil
	}
	if v.requireSPIFFE {
		return nil, fmt.Errorf("client certificate %s has no SPIFFE ID and identity.mtls.require_spiffe is set: %w", describeCert(leaf), ErrInvalid)
	}
	f.Subject = leaf.Subject.String()
	f.Attributes[AttrSubject] = f.Subject
	return f, nil
}

// checkClientLeaf refuses a client certificate issued for something
// other than a TLS client, whoever verified its chain: one whose extended
// key usage is set without clientAuth (or anyExtendedKeyUsage), such as
// a server-only certificate, and a CA certificate presented as a leaf.
// crypto/tls held certificates of tls.client_ca to the first rule, and
// x509svid.Verify to the second, but not the other way round: the same
// certificate identified a caller or not depending on which path
// verified it.
func checkClientLeaf(leaf *x509.Certificate) error {
	if leaf.IsCA {
		return fmt.Errorf("client certificate %s is a CA certificate (basic constraints CA:TRUE); present a leaf certificate issued for client authentication: %w", describeCert(leaf), ErrInvalid)
	}
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return fmt.Errorf("client certificate %s has an extended key usage without clientAuth: it was not issued for TLS client authentication; issue it with clientAuth (SPIRE's X.509-SVIDs carry serverAuth and clientAuth): %w", describeCert(leaf), ErrInvalid)
}

func hasSPIFFEURI(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// describeCert names a certificate for error messages: subject and serial.
func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q serial %s", c.Subject.String(), c.SerialNumber.Text(16))
}

// clientCAs returns every CA of the bundles in force, nil when none.
func (v *mtlsVerifier) clientCAs() *x509.CertPool {
	st := v.state.Load()
	if st == nil || st.size == 0 {
		return nil
	}
	return st.all
}

// Close stops the bundle reloaders.
func (v *mtlsVerifier) Close() error {
	var errs []error
	for _, s := range v.stop {
		errs = append(errs, s())
	}
	v.stop = nil
	return errors.Join(errs...)
}

var _ Verifier = (*mtlsVerifier)(nil)
