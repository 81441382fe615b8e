package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/module"
)

// Module is an identity verifier plugin: a factor kind that policies name
// in `require:`, and a constructor returning a new, unconfigured Verifier
// (usually a pointer to a struct whose yaml-tagged fields are its
// settings). The gateway builds one per `identity.verifiers.NAME` block of
// its config through the same lifecycle as providers and injectors: New,
// strict decoding of the block, Provision(ctx) and Validate() when the
// verifier has them, Cleanup() when either fails, and Close() when the
// identity configuration is replaced. Verify must be safe for concurrent
// use; a verifier that reads Evidence.ProxyAuthorization implements
// ProxyAuthorizationReader.
type Module struct {
	// Name is the factor kind. It must be unique, non-empty and not one of
	// the built-in kinds; the Verifier's Kind() must return it.
	Name string
	// New returns a fresh, unconfigured Verifier.
	New func() Verifier
	// Doc is one line saying what the plugin does, printed by
	// `credgate plugins`.
	Doc string
	// SettingDocs maps each setting (a yaml key of the value New returns)
	// to one line for `credgate plugins`; keys without a line are listed
	// with their type only.
	SettingDocs map[string]string
}

// builtinKinds are the factors configured under their own identity keys
// (identity.mtls, identity.jwt, identity.kubernetes) or always present.
var builtinKinds = []string{KindSource, KindMTLS, KindJWT, KindKubernetes}

// Registry maps verifier plugin names to modules. The zero value is not
// usable; use NewRegistry. Most code uses the package-level functions,
// which act on DefaultRegistry; tests build their own Registry.
type Registry struct {
	r *module.Registry[Verifier]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{r: module.New[Verifier]("identity verifier")}
}

// DefaultRegistry holds the compiled-in verifier plugins, which register
// themselves in init functions.
var DefaultRegistry = NewRegistry()

// Register adds m. It panics if m.Name is empty, a built-in kind or taken,
// or m.New is nil: programming errors found at start-up.
func (r *Registry) Register(m Module) {
	if slices.Contains(builtinKinds, m.Name) {
		panic(fmt.Sprintf("identity verifier %q is a built-in factor kind", m.Name))
	}
	r.r.Register(m.Name, m.New, module.Info{Doc: m.Doc, SettingDocs: m.SettingDocs})
}

// Lookup returns the module registered under name.
func (r *Registry) Lookup(name string) (Module, bool) {
	f, ok := r.r.Lookup(name)
	if !ok {
		return Module{}, false
	}
	in := r.r.Info(name)
	return Module{Name: name, New: f, Doc: in.Doc, SettingDocs: in.SettingDocs}, true
}

// Names lists the factor kinds a policy may require: the built-in ones
// and the registered plugins, sorted.
func (r *Registry) Names() []string {
	out := append(slices.Clone(builtinKinds), r.r.Names()...)
	slices.Sort(out)
	return out
}

// Plugins lists the registered plugin names, sorted.
func (r *Registry) Plugins() []string { return r.r.Names() }

// Load builds the verifier plugin name from its settings block; see
// Module for the lifecycle. A built-in kind or an unknown name is an error
// that says what to write instead.
func (r *Registry) Load(ctx context.Context, name string, settings *yaml.Node) (Verifier, error) {
	if slices.Contains(builtinKinds, name) {
		return nil, fmt.Errorf("%q is a built-in factor; configure it under identity.%s, not identity.verifiers", name, name)
	}
	if _, ok := r.r.Lookup(name); !ok {
		return nil, fmt.Errorf("unknown identity verifier %q; compiled-in verifier plugins: %v", name, r.Plugins())
	}
	v, err := r.r.Load(ctx, name, settings)
	if err != nil {
		return nil, err
	}
	if v.Kind() != name {
		_ = closeVerifier(v)
		return nil, fmt.Errorf("identity verifier %q: its Kind() is %q; a plugin's Kind must be the name it registered", name, v.Kind())
	}
	return v, nil
}

// Register adds m to DefaultRegistry; call it from an init function.
func Register(m Module) { DefaultRegistry.Register(m) }

// Lookup returns the module registered in DefaultRegistry under name.
func Lookup(name string) (Module, bool) { return DefaultRegistry.Lookup(name) }

// Names lists the factor kinds of DefaultRegistry; see Registry.Names.
func Names() []string { return DefaultRegistry.Names() }

// closeVerifier releases what v holds: Close when it has one, else
// Cleanup (the lifecycle's name for it, as for providers and injectors).
// A panic in either is returned as an error (module.Guard), never passed
// on to the caller replacing the configuration, and one that has not
// returned after module.CleanupTimeout is abandoned (module.GuardUntil).
func closeVerifier(v Verifier) error {
	deadline := time.Now().Add(module.CleanupTimeout)
	switch c := v.(type) {
	case interface{ Close() error }:
		return module.GuardUntil(deadline, fmt.Sprintf("identity verifier %q Close", v.Kind()), c.Close)
	case interface{ Cleanup() error }:
		return module.GuardUntil(deadline, fmt.Sprintf("identity verifier %q Cleanup", v.Kind()), c.Cleanup)
	}
	return nil
}

// PluginVerifyTimeout bounds one Verify of a verifier plugin: a plugin
// that has not returned by then (one that ignores its context) fails the
// connection's identity with ErrUnavailable (503 identity_unavailable),
// and its call is abandoned (its goroutine ends when the call returns).
// The built-in verifiers bound their own calls (JWKS, TokenReview).
const PluginVerifyTimeout = 10 * time.Second

// boundedVerifier runs a plugin's Verify under PluginVerifyTimeout.
type boundedVerifier struct{ Verifier }

// boundedReader is a boundedVerifier of a ProxyAuthorizationReader.
type boundedReader struct{ boundedVerifier }

func (boundedReader) ReadsProxyAuthorization() {}

// bounded wraps a plugin verifier for the Resolver.
func bounded(v Verifier) Verifier {
	if _, ok := v.(ProxyAuthorizationReader); ok {
		return boundedReader{boundedVerifier{v}}
	}
	return boundedVerifier{v}
}

// Verify calls the plugin's Verify in a goroutine of its own with a
// context that ends after PluginVerifyTimeout, and waits for it at most
// that long (module.Call). A panic in it is recovered there (verify
// reports it).
func (b boundedVerifier) Verify(ctx context.Context, ev Evidence) (*Factor, error) {
	ctx, cancel := context.WithTimeout(ctx, PluginVerifyTimeout)
	defer cancel()
	f, err := module.Call(ctx, 0, fmt.Sprintf("identity verifier %q Verify", b.Kind()), func(ctx context.Context) (*Factor, error) {
		return verify(ctx, b.Verifier, ev)
	}, nil)
	switch {
	case !errors.Is(err, module.ErrAbandoned):
		return f, err
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("the verifier did not return within %s (it does not honour its context): %w", PluginVerifyTimeout, ErrUnavailable)
	}
	return nil, fmt.Errorf("the connection's context ended while verifying: %w: %w", ErrUnavailable, context.Cause(ctx))
}
