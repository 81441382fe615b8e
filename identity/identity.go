// Package identity turns what a client connection presents into a verified
// Workload. Each kind of proof (source address, mTLS certificate, signed
// token, ...) is checked by a Verifier registered by name; a Resolver runs
// the configured verifiers and matches the verified factors against the
// workload definitions of the policy.
//
// identity knows nothing of policy, providers or injectors: policy hands it
// workload definitions as []Spec, the gateway hands it Evidence.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
)

// Factor kinds known to the core. Verifiers added later register their own.
const (
	// KindSource is the client's network address, always present.
	KindSource = "source"
	// KindMTLS is a client certificate verified on the gateway's TLS listener.
	KindMTLS = "mtls"
	// KindJWT is a signed token presented in Proxy-Authorization.
	KindJWT = "jwt"
)

// ErrInvalid marks a factor that was presented but did not verify. A
// connection with an invalid factor is refused even if other factors verify.
var ErrInvalid = errors.New("identity: factor did not verify")

// Evidence is everything one client connection or request presents to the
// gateway. Nothing in it has been trusted yet except what the TLS stack
// verified (VerifiedChains).
type Evidence struct {
	// Source is the client's address on the accepted TCP connection.
	Source netip.AddrPort
	// VerifiedChains are the client certificate chains verified by the TLS
	// listener against its client CA bundle; nil on the plain listener or
	// when the client sent no certificate.
	VerifiedChains [][]*x509.Certificate
	// ProxyAuthorization is the raw Proxy-Authorization header of the
	// CONNECT or absolute-URI request, "" when absent.
	ProxyAuthorization string
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
}

// Verifier checks one kind of factor.
//
// Verify returns (nil, nil) when the evidence does not present this factor,
// a Factor when it verified, and an error wrapping ErrInvalid when it was
// presented but failed. Implementations are safe for concurrent use.
type Verifier interface {
	Kind() string
	Verify(ctx context.Context, ev Evidence) (*Factor, error)
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
}

// Matches reports whether the verified factors satisfy s.
func (s Spec) Matches(w Workload) bool {
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
	// A spec with no selector at all never matches: it would make every
	// caller that workload.
	return len(s.CIDRs) > 0 || len(s.Require) > 0
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

// FactorKinds lists the kinds of the verified factors, for audit lines.
func (w Workload) FactorKinds() []string {
	out := make([]string, 0, len(w.Factors))
	for _, f := range w.Factors {
		out = append(out, f.Kind)
	}
	return out
}

// DisplayName is the workload name, or "anonymous".
func (w Workload) DisplayName() string {
	if w.Name == "" {
		return "anonymous"
	}
	return w.Name
}

// Resolver runs verifiers over evidence and names the workload.
type Resolver struct {
	verifiers []Verifier
}

// NewResolver returns a Resolver running vs in order. The source verifier
// is always run first and need not be listed.
func NewResolver(vs ...Verifier) *Resolver {
	all := []Verifier{SourceVerifier{}}
	for _, v := range vs {
		if v.Kind() != KindSource {
			all = append(all, v)
		}
	}
	return &Resolver{verifiers: all}
}

// Resolve verifies every factor ev presents and returns the first spec, in
// the given order, that the verified factors satisfy. A factor that was
// presented and failed makes the whole resolution fail: identity comes
// only from factors that verified, and a broken one is never ignored.
func (r *Resolver) Resolve(ctx context.Context, ev Evidence, specs []Spec) (Workload, error) {
	w := Workload{Source: ev.Source.Addr().Unmap()}
	for _, v := range r.verifiers {
		f, err := v.Verify(ctx, ev)
		if err != nil {
			return w, fmt.Errorf("identity: %s: %w", v.Kind(), err)
		}
		if f != nil {
			w.Factors = append(w.Factors, *f)
		}
	}
	for _, s := range specs {
		if s.Matches(w) {
			w.Name = s.Name
			break
		}
	}
	return w, nil
}

// SourceVerifier produces the source factor from the connection's address.
// It always verifies: the address is what the kernel reported.
type SourceVerifier struct{}

// Kind implements Verifier.
func (SourceVerifier) Kind() string { return KindSource }

// Verify implements Verifier.
func (SourceVerifier) Verify(_ context.Context, ev Evidence) (*Factor, error) {
	if !ev.Source.IsValid() {
		return nil, nil
	}
	a := ev.Source.Addr().Unmap()
	return &Factor{Kind: KindSource, Subject: a.String()}, nil
}

// Module registers a kind of verifier by name.
type Module struct {
	// Name is the factor kind, as written in `require:` lists.
	Name string
	// New returns a verifier from its decoded settings. It is called once
	// per configuration load.
	New func(ctx context.Context, settings map[string]any) (Verifier, error)
}

// Registry holds verifier modules. The process-wide one is filled by
// init functions; tests may build their own.
type Registry struct {
	mu      sync.RWMutex
	modules map[string]Module
}

var defaultRegistry = &Registry{}

// Register adds m to the process-wide registry. It panics on an empty or
// duplicate name: both are programming errors found at start-up.
func Register(m Module) { defaultRegistry.Register(m) }

// Lookup returns the registered module of that name.
func Lookup(name string) (Module, bool) { return defaultRegistry.Lookup(name) }

// Names lists the registered verifier kinds, sorted.
func Names() []string { return defaultRegistry.Names() }

// Register adds m; it panics on an empty or duplicate name.
func (r *Registry) Register(m Module) {
	if m.Name == "" || m.New == nil {
		panic("identity: Register with empty name or nil New")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.modules == nil {
		r.modules = map[string]Module{}
	}
	if _, dup := r.modules[m.Name]; dup {
		panic("identity: duplicate verifier " + m.Name)
	}
	r.modules[m.Name] = m
}

// Lookup returns the module of that name.
func (r *Registry) Lookup(name string) (Module, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.modules[name]
	return m, ok
}

// Names lists registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.modules)+1)
	for n := range r.modules {
		out = append(out, n)
	}
	if !slices.Contains(out, KindSource) {
		out = append(out, KindSource)
	}
	sort.Strings(out)
	return out
}
