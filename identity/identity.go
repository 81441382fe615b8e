// Package identity turns what a client connection presents into a verified
// Workload. Each kind of proof (source address, mTLS certificate, signed
// token, Kubernetes TokenReview) is checked by a Verifier registered by
// name; a Resolver runs the configured verifiers and matches the verified
// factors against the workload definitions of the policy.
//
// identity knows nothing of policy, providers or injectors: policy hands it
// workload definitions as []Spec, the gateway hands it Evidence.
//
// # Factors
//
//   - source: the client's TCP address; always present.
//   - mtls: a client certificate, verified by the gateway's TLS listener
//     (Evidence.VerifiedChains) or by the trust bundles of Config.MTLS
//     (Evidence.PeerCertificates): PEM files, and the bundles of a SPIFFE
//     Workload API, which also provides the gateway's own X.509-SVID
//     (Resolver.WorkloadAPI). Its subject is the SPIFFE ID of the URI
//     SAN, else the certificate's subject DN.
//   - jwt: a signed token in Proxy-Authorization ("Bearer <jwt>", or Basic
//     with the token as password), verified against the JWKS of a
//     configured issuer; issuer profiles map claims to attributes.
//   - kubernetes: the same token checked by the Kubernetes TokenReview API,
//     so that a token stops working when its pod is deleted.
//
// Every factor that is presented must verify (else ErrInvalid), and all
// factors that select a workload must select the same one (else
// ErrFactorConflict).
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/panics"
)

// Factor kinds known to the core. Verifiers added later register their own.
const (
	// KindSource is the client's network address, always present.
	KindSource = "source"
	// KindMTLS is a client certificate verified on the gateway's TLS listener.
	KindMTLS = "mtls"
	// KindJWT is a signed token presented in Proxy-Authorization.
	KindJWT = "jwt"
	// KindKubernetes is a token in Proxy-Authorization that the Kubernetes
	// TokenReview API authenticated.
	KindKubernetes = "kubernetes"
)

// Attribute names set by the built-in verifiers and tested by the
// selectors of a Spec.
const (
	// AttrSPIFFEID is the SPIFFE ID of an X.509-SVID or JWT-SVID.
	AttrSPIFFEID = "spiffe_id"
	// AttrTrustDomain is the trust domain of AttrSPIFFEID.
	AttrTrustDomain = "trust_domain"
	// AttrPath is the path of AttrSPIFFEID.
	AttrPath = "path"
	// AttrSubject is the subject DN of a non-SPIFFE client certificate.
	AttrSubject = "subject"
	// AttrCertThumbprint is the base64url SHA-256 of the client
	// certificate (RFC 8705 x5t#S256).
	AttrCertThumbprint = "x5t_s256"
	// AttrTokenCertThumbprint is the token's cnf.x5t#S256 claim: the
	// certificate the token is bound to.
	AttrTokenCertThumbprint = "cnf_x5t_s256"
	// AttrNamespace is a Kubernetes namespace.
	AttrNamespace = "namespace"
	// AttrServiceAccount is a Kubernetes service account name.
	AttrServiceAccount = "service_account"
	// AttrPod is a Kubernetes pod name.
	AttrPod = "pod"
	// AttrIssuer and AttrSub are a token's iss and sub claims.
	AttrIssuer = "iss"
	AttrSub    = "sub"
)

// ErrInvalid marks a factor that was presented but did not verify. A
// connection with an invalid factor is refused even if other factors verify.
var ErrInvalid = errors.New("identity: factor did not verify")

// ErrFactorConflict marks verified factors that select different
// workloads, such as a certificate of one workload with a token of
// another. The connection is refused and the conflict audited.
var ErrFactorConflict = errors.New("identity: factors select different workloads")

// ErrUnavailable marks a factor that could not be checked now because
// something it depends on (a JWKS endpoint, the Kubernetes API server) did
// not answer. The connection is refused; retrying later may succeed.
var ErrUnavailable = errors.New("identity: verifier unavailable")

// Evidence is everything one client connection or request presents to the
// gateway. Nothing in it has been trusted yet except what the TLS stack
// verified (VerifiedChains).
type Evidence struct {
	// Source is the client's address on the accepted TCP connection, or
	// the one a trusted load balancer's PROXY protocol header named.
	Source netip.AddrPort
	// Via, when valid, is the address of the trusted load balancer whose
	// PROXY header named Source. It is audited, never a factor.
	Via netip.Addr
	// SourceText, when set, is Source's address (unmapped) as text,
	// formatted once for the connection by the caller: the source factor's
	// Subject is then this string rather than a new one per resolution.
	// One that is not exactly that text is ignored (the address is
	// formatted anew), so it can never name another source.
	SourceText string
	// VerifiedChains are the client certificate chains verified by the TLS
	// listener against its client CA bundle; nil on the plain listener or
	// when the client sent no certificate.
	VerifiedChains [][]*x509.Certificate
	// PeerCertificates are the certificates the client sent on the TLS
	// listener, leaf first, as tls.ConnectionState.PeerCertificates; nil on
	// the plain listener or when the client sent none. When VerifiedChains
	// is empty, the mtls verifier verifies them against its own trust
	// bundles (Config.MTLS.Bundles); a certificate that nothing verifies
	// fails with ErrInvalid.
	PeerCertificates []*x509.Certificate
	// ProxyAuthorization is the raw Proxy-Authorization header of the
	// CONNECT or absolute-URI request, "" when absent.
	ProxyAuthorization string
	// ProxyAuthorizations is how many Proxy-Authorization fields the
	// request carried: more than one is refused (ErrInvalid) when a
	// verifier reads the field, since only one could be verified and the
	// others would be ignored.
	ProxyAuthorizations int
}

// Factor is one proof that verified.
type Factor struct {
	// Kind names the verifier that produced it (KindSource, KindMTLS, ...).
	Kind string
	// Subject is the identity the factor asserts: an address, a SPIFFE ID,
	// a token subject.
	Subject string
	// Attributes are verified facts usable by workload selectors and rule
	// conditions (e.g. "namespace", "service_account"). Never secrets.
	Attributes map[string]string
	// Expires is when the factor stops being valid (a token's exp, a
	// certificate's NotAfter; for a TokenReview, when its answer does,
	// at the latest the token's exp); zero when it does not expire.
	// Verifying the same evidence again after it may give a later one
	// (a new TokenReview) or fail.
	Expires time.Time
	// Token is the bearer token that verified (KindJWT, KindKubernetes),
	// zero for factors that are not tokens. It is kept so that a provider
	// can present the workload's own verified token onward, e.g. as the
	// subject_token of an OAuth2 token exchange; every printed form of it
	// is redacted.
	Token Token
	// IssuedFor, when set, is the only workload the factor may identify:
	// a token the gateway issued for that workload (a run token, whose
	// sub names it). A workload definition that would take the factor
	// under another name is passed over (pick), so a token issued for
	// one workload never identifies another, whatever the claims of the
	// others. It only ever narrows what the other fields select.
	IssuedFor string
}

// Verifier checks one kind of factor.
//
// Verify returns (nil, nil) when the evidence does not present this factor,
// a Factor when it verified, and an error wrapping ErrInvalid when it was
// presented but failed (ErrUnavailable when it could not be checked now).
// Error messages never contain a token or other secret. Implementations
// are safe for concurrent use; those that run background work also
// implement io.Closer.
type Verifier interface {
	Kind() string
	Verify(ctx context.Context, ev Evidence) (*Factor, error)
}

// ProxyAuthorizationReader is implemented by verifiers that take their
// factor from Evidence.ProxyAuthorization. When at least one of them runs
// and the evidence carries a Proxy-Authorization header that none of them
// turned into a factor, Resolve fails with ErrInvalid: a credential that
// nothing verified is never silently ignored.
type ProxyAuthorizationReader interface {
	Verifier
	// ReadsProxyAuthorization is a marker; it does nothing.
	ReadsProxyAuthorization()
}

// Spec defines one named workload: the selectors a verified identity must
// satisfy to be that workload. Policy builds Specs from its `workloads:`
// section.
type Spec struct {
	// Name is the workload name used in rules.
	Name string
	// CIDRs, when non-empty, requires the source address to lie in one.
	CIDRs []netip.Prefix
	// Require lists factor kinds that must all have verified. The source
	// factor is implied when CIDRs is set.
	Require []string
	// SPIFFE, when non-empty, requires a verified SPIFFE ID (attribute
	// spiffe_id, of an X.509-SVID or a JWT-SVID) matching one pattern.
	SPIFFE []SPIFFEPattern
	// Namespaces, when non-empty, requires a verified Kubernetes namespace
	// (attribute namespace) equal to one of them.
	Namespaces []string
	// ServiceAccounts, when non-empty, requires a verified Kubernetes
	// service account name (attribute service_account) equal to one.
	ServiceAccounts []string
	// Claims requires, for each entry, a verified attribute of that name
	// with exactly that value (token claims mapped by the issuer profile,
	// or any other factor attribute).
	Claims map[string]string
	// BindTokenToCert requires a jwt factor whose cnf.x5t#S256 claim
	// names the client certificate of the same connection (RFC 8705).
	BindTokenToCert bool
}

// HasSelector reports whether s has any selector; a spec without one
// never matches, since it would make every caller that workload.
func (s Spec) HasSelector() bool {
	return len(s.CIDRs) > 0 || len(s.Require) > 0 || s.identitySelectors() || s.BindTokenToCert
}

// identitySelectors reports whether s has selectors on factor attributes.
func (s Spec) identitySelectors() bool {
	return len(s.SPIFFE) > 0 || len(s.Namespaces) > 0 || len(s.ServiceAccounts) > 0 || len(s.Claims) > 0
}

// Matches reports whether the verified factors satisfy every selector of
// s: the source lies in CIDRs, every required kind verified, and for each
// attribute selector at least one factor carries the attribute and every
// factor that carries it has an accepted value. It does not look at
// conflicts between factors; Resolve does.
func (s Spec) Matches(w Workload) bool {
	if !s.HasSelector() {
		return false
	}
	if len(s.CIDRs) > 0 {
		ok := false
		for _, p := range s.CIDRs {
			if p.Contains(w.Source) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, k := range s.Require {
		if w.Factor(k) == nil {
			return false
		}
	}
	if len(s.SPIFFE) > 0 && !allCarrying(w.Factors, AttrSPIFFEID, s.matchSPIFFE) {
		return false
	}
	if len(s.Namespaces) > 0 && !allCarrying(w.Factors, AttrNamespace, func(v string) bool { return slices.Contains(s.Namespaces, v) }) {
		return false
	}
	if len(s.ServiceAccounts) > 0 && !allCarrying(w.Factors, AttrServiceAccount, func(v string) bool { return slices.Contains(s.ServiceAccounts, v) }) {
		return false
	}
	for k, want := range s.Claims {
		if !allCarrying(w.Factors, k, func(v string) bool { return v == want }) {
			return false
		}
	}
	if s.BindTokenToCert {
		m, j := w.Factor(KindMTLS), w.Factor(KindJWT)
		if m == nil || j == nil {
			return false
		}
		tp := j.Attributes[AttrTokenCertThumbprint]
		if tp == "" || tp != m.Attributes[AttrCertThumbprint] {
			return false
		}
	}
	return true
}

func (s Spec) matchSPIFFE(id string) bool {
	for _, p := range s.SPIFFE {
		if p.Match(id) {
			return true
		}
	}
	return false
}

// allCarrying reports whether at least one factor carries attribute attr
// and every factor that carries it has a value ok accepts.
func allCarrying(fs []Factor, attr string, ok func(string) bool) bool {
	seen := false
	for i := range fs {
		v, has := fs[i].Attributes[attr]
		if !has {
			continue
		}
		if !ok(v) {
			return false
		}
		seen = true
	}
	return seen
}

// selects reports whether factor f, on its own, points at s: s has at
// least one attribute selector on an attribute f carries, and f satisfies
// every such selector.
func (s Spec) selects(f *Factor) bool {
	if len(f.Attributes) == 0 {
		return false
	}
	applies := false
	if v, has := f.Attributes[AttrSPIFFEID]; has && len(s.SPIFFE) > 0 {
		if !s.matchSPIFFE(v) {
			return false
		}
		applies = true
	}
	if v, has := f.Attributes[AttrNamespace]; has && len(s.Namespaces) > 0 {
		if !slices.Contains(s.Namespaces, v) {
			return false
		}
		applies = true
	}
	if v, has := f.Attributes[AttrServiceAccount]; has && len(s.ServiceAccounts) > 0 {
		if !slices.Contains(s.ServiceAccounts, v) {
			return false
		}
		applies = true
	}
	for k, want := range s.Claims {
		if v, has := f.Attributes[k]; has {
			if v != want {
				return false
			}
			applies = true
		}
	}
	return applies
}

// Workload is the verified identity of a caller. The zero Name means the
// caller is anonymous: nothing it presented matched a workload definition.
type Workload struct {
	// Name is the matched workload, "" when anonymous.
	Name string
	// Source is the client's address (unmapped IPv4 where applicable).
	Source netip.Addr
	// Factors are the factors that verified, in verifier order.
	Factors []Factor
	// Posture is the posture feed's record for the workload (see
	// PostureFeed), nil when there is none. It is shared: read it, never
	// modify it.
	Posture map[string]any
}

// Anonymous reports whether no workload definition matched.
func (w Workload) Anonymous() bool { return w.Name == "" }

// Factor returns the verified factor of the given kind, or nil.
func (w Workload) Factor(kind string) *Factor {
	for i := range w.Factors {
		if w.Factors[i].Kind == kind {
			return &w.Factors[i]
		}
	}
	return nil
}

// FactorKinds lists the kinds of the verified factors: what an audit line
// names in its factors field (the gateway writes them from the factors
// themselves, without this slice).
func (w Workload) FactorKinds() []string {
	out := make([]string, 0, len(w.Factors))
	for _, f := range w.Factors {
		out = append(out, f.Kind)
	}
	return out
}

// Attributes merges the attributes of all factors; when two factors carry
// the same attribute, the first (in verifier order) wins.
func (w Workload) Attributes() map[string]string {
	out := map[string]string{}
	for _, f := range w.Factors {
		for k, v := range f.Attributes {
			if _, dup := out[k]; !dup {
				out[k] = v
			}
		}
	}
	return out
}

// Expires returns the earliest expiry of the verified factors, zero when
// none expires: the gateway should not keep using the identity past it
// (for example on a long-lived tunnel).
func (w Workload) Expires() time.Time {
	var t time.Time
	for _, f := range w.Factors {
		if !f.Expires.IsZero() && (t.IsZero() || f.Expires.Before(t)) {
			t = f.Expires
		}
	}
	return t
}

// DisplayName is the workload name, or "anonymous".
func (w Workload) DisplayName() string {
	if w.Name == "" {
		return "anonymous"
	}
	return w.Name
}

// Resolver runs verifiers over evidence and names the workload. It is
// safe for concurrent use. One built by New owns background refreshers
// (trust bundles, JWKS, posture feed) that Close stops.
type Resolver struct {
	verifiers []Verifier
	// readsAuth is true when a verifier reads Proxy-Authorization.
	readsAuth bool
	posture   *PostureFeed
	mtls      *mtlsVerifier
	kube      *tokenReviewVerifier
	closers   []func() error
	closeOnce sync.Once
	closeErr  error
}

// NewResolver returns a Resolver running vs in order. The source verifier
// is always run first and need not be listed. It starts nothing; use New
// to build the verifiers of a Config.
func NewResolver(vs ...Verifier) *Resolver {
	all := []Verifier{SourceVerifier{}}
	r := &Resolver{}
	for _, v := range vs {
		if v.Kind() == KindSource {
			continue
		}
		all = append(all, v)
		if _, ok := v.(ProxyAuthorizationReader); ok {
			r.readsAuth = true
		}
	}
	r.verifiers = all
	return r
}

// Resolve verifies every factor ev presents and names the workload.
//
// A factor that was presented and failed makes the whole resolution fail
// (ErrInvalid, or ErrUnavailable when it could not be checked): identity
// comes only from factors that verified, and a broken one is never
// ignored. So does a Proxy-Authorization header that no token verifier
// accepted, and a token bound to a certificate (cnf.x5t#S256) presented
// without that certificate.
//
// A verified factor selects the specs whose attribute selectors (spiffe,
// namespace, service_account, claims) it carries and satisfies. When
// factors select workloads and no spec is selected by all of them,
// Resolve fails with ErrFactorConflict. Otherwise the workload is the
// first spec, in the given order, that the factors satisfy (Spec.Matches)
// and that every selecting factor selects; when no factor selects any
// spec, the first spec the factors satisfy. No such spec: anonymous.
//
// The returned Workload carries the factors even when err is not nil, for
// audit lines.
func (r *Resolver) Resolve(ctx context.Context, ev Evidence, specs []Spec) (Workload, error) {
	w := Workload{Source: ev.Source.Addr().Unmap()}
	if r.readsAuth && ev.ProxyAuthorizations > 1 {
		return w, fmt.Errorf("identity: Proxy-Authorization: the request carries %d of them; send one credential: %w", ev.ProxyAuthorizations, ErrInvalid)
	}
	tokenUsed := false
	for _, v := range r.verifiers {
		if sv, ok := v.(SourceVerifier); ok {
			// Verify's factor, without the allocation of a *Factor.
			if f, ok := sv.factor(ev); ok {
				w.Factors = append(w.Factors, f)
			}
			continue
		}
		f, err := verify(ctx, v, ev)
		if err != nil {
			return w, fmt.Errorf("identity: %s: %w", v.Kind(), err)
		}
		if f != nil {
			w.Factors = append(w.Factors, *f)
			if _, ok := v.(ProxyAuthorizationReader); ok {
				tokenUsed = true
			}
		}
	}
	if r.readsAuth && !tokenUsed && strings.TrimSpace(ev.ProxyAuthorization) != "" {
		return w, fmt.Errorf("identity: Proxy-Authorization: no configured issuer accepts the presented token: %w", ErrInvalid)
	}
	if err := checkBinding(w); err != nil {
		return w, err
	}
	name, err := pick(w, specs)
	if err != nil {
		return w, err
	}
	w.Name = name
	if name != "" && r.posture != nil {
		w.Posture = r.posture.Lookup(name)
	}
	return w, nil
}

// checkBinding enforces RFC 8705: a token that names a certificate in
// cnf.x5t#S256 is only valid with that certificate.
func checkBinding(w Workload) error {
	for _, f := range w.Factors {
		tp, bound := f.Attributes[AttrTokenCertThumbprint]
		if !bound {
			continue
		}
		m := w.Factor(KindMTLS)
		if m == nil {
			return fmt.Errorf("identity: %s: the token is bound to a client certificate (cnf.x5t#S256) but the connection presented none: %w", f.Kind, ErrInvalid)
		}
		if m.Attributes[AttrCertThumbprint] != tp {
			return fmt.Errorf("identity: %s: the token is bound to a different client certificate than the one presented (cnf.x5t#S256 mismatch): %w", f.Kind, ErrInvalid)
		}
	}
	return nil
}

// verify calls v.Verify and holds a plugin to the contract that the
// resolver relies on: a panic is an error wrapping ErrInvalid (where and
// the value's type, never the value), and a factor is of v's kind (one
// with no Kind gets it): a verifier cannot present a factor of another
// kind, which would satisfy a workload's `require: [mtls]` (or the
// certificate binding of a token) without that factor having verified.
// The factor's subject and attributes are held to the limits of
// checkFactor: they flow into conditions, audit lines, logs and spans.
func verify(ctx context.Context, v Verifier, ev Evidence) (f *Factor, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("the verifier panicked: %s; at %s: %w", panics.Describe(p), firstFrame(panics.Where(1)), ErrInvalid)
		}
	}()
	f, err = v.Verify(ctx, ev)
	if err != nil || f == nil {
		return nil, err
	}
	switch kind := v.Kind(); f.Kind {
	case kind:
	case "":
		fc := *f
		fc.Kind = kind
		f = &fc
	default:
		return nil, fmt.Errorf("the verifier returned a factor of kind %q; a verifier's factors are of its own kind (a bug in the plugin): %w", f.Kind, ErrInvalid)
	}
	if err := checkFactor(f); err != nil {
		return nil, fmt.Errorf("the verifier returned a factor it may not: %v; a factor holds at most %d attributes, keys of %d and values and subject of %d bytes of UTF-8 without control characters, and a spiffe_id attribute is a SPIFFE ID as written by go-spiffe (with its own trust_domain and path): %w", err, MaxFactorAttributes, MaxFactorKeyBytes, MaxFactorValueBytes, ErrInvalid)
	}
	return f, nil
}

// firstFrame is the innermost frame of a panics.Where stack.
func firstFrame(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Identify names the workload that w's verified factors make under specs,
// by the rules Resolve names a workload with ("" when no spec matches,
// an error wrapping ErrFactorConflict when the factors select workloads
// none of which all of them select). It verifies nothing again: no key
// set, trust bundle or TokenReview is consulted, and w.Name is ignored.
// A gateway uses it to say what an open connection, identified under one
// set of workload definitions, is under another (a policy reload).
func Identify(w Workload, specs []Spec) (string, error) { return pick(w, specs) }

// pick names the workload of the verified factors; see Resolve.
func pick(w Workload, specs []Spec) (string, error) {
	// Which factors select some spec? Factors without attributes (source)
	// never do. Usually a handful of factors: the array avoids allocating,
	// and more (plugin verifiers) grow the slice: every selecting factor
	// counts, however many there are.
	var buf [8]int
	selecting := buf[:0]
	for i := range w.Factors {
		if w.Factors[i].Kind == KindSource {
			continue
		}
		for j := range specs {
			if specs[j].selects(&w.Factors[i]) {
				selecting = append(selecting, i)
				break
			}
		}
	}
	n := len(selecting)
	selectedByAll := func(s *Spec) bool {
		for _, i := range selecting {
			if !s.selects(&w.Factors[i]) {
				return false
			}
		}
		return true
	}
	if n >= 2 {
		agree := false
		for j := range specs {
			if selectedByAll(&specs[j]) {
				agree = true
				break
			}
		}
		if !agree {
			return "", conflictError(w, specs, selecting)
		}
	}
	for j := range specs {
		if selectedByAll(&specs[j]) && specs[j].Matches(w) && issuedFor(w, specs[j].Name) {
			return specs[j].Name, nil
		}
	}
	return "", nil
}

// issuedFor reports whether no factor of w was issued for a workload
// other than name (Factor.IssuedFor).
func issuedFor(w Workload, name string) bool {
	for i := range w.Factors {
		if f := &w.Factors[i]; f.IssuedFor != "" && f.IssuedFor != name {
			return false
		}
	}
	return true
}

// conflictError names, for each selecting factor, its subject and the
// first workload it selects. Subjects are identities, not secrets.
func conflictError(w Workload, specs []Spec, selecting []int) error {
	parts := make([]string, 0, len(selecting))
	for _, i := range selecting {
		f := &w.Factors[i]
		for j := range specs {
			if specs[j].selects(f) {
				parts = append(parts, fmt.Sprintf("%s (%s) selects workload %q", f.Kind, f.Subject, specs[j].Name))
				break
			}
		}
	}
	return fmt.Errorf("identity: %s: %w", strings.Join(parts, ", "), ErrFactorConflict)
}

// ClientCAs returns the roots of the mtls trust bundles in force (they
// are reloaded when their files change, and include the Workload API's
// bundles as they rotate), for the acceptable-CA list a TLS
// listener sends in its CertificateRequest; nil when no bundle is
// configured. Verification itself happens in Resolve.
func (r *Resolver) ClientCAs() *x509.CertPool {
	if r.mtls == nil {
		return nil
	}
	return r.mtls.clientCAs()
}

// WorkloadAPI returns the SPIFFE Workload API source of a Resolver built
// by New (identity.mtls.workload_api): the gateway's own X.509-SVID for
// its TLS listener, and its status for readiness and metrics. Nil when
// not configured.
func (r *Resolver) WorkloadAPI() *WorkloadAPISource {
	if r.mtls == nil {
		return nil
	}
	return r.mtls.wl
}

// Posture returns the posture feed of a Resolver built by New, nil when
// none is configured.
func (r *Resolver) Posture() *PostureFeed { return r.posture }

// Close stops the background refreshers of a Resolver built by New and
// releases its verifiers. It is safe to call more than once.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for i := len(r.closers) - 1; i >= 0; i-- {
			errs = append(errs, r.closers[i]())
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// SourceVerifier produces the source factor from the connection's address.
// It always verifies: the address is what the kernel reported.
type SourceVerifier struct{}

// Kind implements Verifier.
func (SourceVerifier) Kind() string { return KindSource }

// Verify implements Verifier.
func (v SourceVerifier) Verify(_ context.Context, ev Evidence) (*Factor, error) {
	f, ok := v.factor(ev)
	if !ok {
		return nil, nil
	}
	return &f, nil
}

// factor is Verify's factor as a value (Resolve's, without the
// allocation of a *Factor): the address as text (ev.SourceText when it
// is exactly that), or false without an address.
func (SourceVerifier) factor(ev Evidence) (Factor, bool) {
	if !ev.Source.IsValid() {
		return Factor{}, false
	}
	a := ev.Source.Addr().Unmap()
	var buf [64]byte
	if ev.SourceText == "" || string(a.AppendTo(buf[:0])) != ev.SourceText {
		return Factor{Kind: KindSource, Subject: a.String()}, true
	}
	return Factor{Kind: KindSource, Subject: ev.SourceText}, true
}
