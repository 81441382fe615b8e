package identity_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
)

const pluginSecret = "attest-PANIC-VALUE-0123456789"

// The verifiers below are registered in DefaultRegistry, which
// identity.New builds from: TestVerifierPlugins lists them.

// misbehavingVerifier is a verifier plugin that does what its `do`
// setting names when the connection presents Proxy-Authorization.
type misbehavingVerifier struct {
	kind string
	Do   string `yaml:"do"`
	// released counts Cleanup (or Close) calls.
	released *atomic.Int32
}

func (v *misbehavingVerifier) Kind() string { return v.kind }

func (v *misbehavingVerifier) Verify(_ context.Context, ev identity.Evidence) (*identity.Factor, error) {
	if ev.ProxyAuthorization == "" {
		return nil, nil
	}
	switch v.Do {
	case "panic":
		panic("attestation " + pluginSecret)
	case "index":
		var s []string
		_ = s[len(pluginSecret)] // index out of range
	case "kind-mtls":
		return &identity.Factor{Kind: identity.KindMTLS, Subject: "spiffe://forged/x",
			Attributes: map[string]string{identity.AttrSPIFFEID: "spiffe://forged/x", identity.AttrCertThumbprint: "abc"}}, nil
	case "kind-other-plugin":
		return &identity.Factor{Kind: "idtest-other", Subject: "x"}, nil
	case "hang": // ignores its context
		<-hungVerifies
		return nil, nil
	case "kind-empty":
		return &identity.Factor{Subject: "builder"}, nil
	}
	if f, ok := attrFactors[v.Do]; ok { // TestVerifierFactorBounded
		return &f, nil
	}
	return &identity.Factor{Kind: v.kind, Subject: "builder"}, nil
}

func (*misbehavingVerifier) ReadsProxyAuthorization() {}

// cleanupVerifier releases through Cleanup, as providers and injectors
// do (the lifecycle of docs/plugins.md), not Close.
type cleanupVerifier struct {
	misbehavingVerifier `yaml:",inline"`
}

func (v *cleanupVerifier) Cleanup() error {
	v.released.Add(1)
	if v.Do == "panic-cleanup" {
		panic("cleanup " + pluginSecret)
	}
	return nil
}

var released atomic.Int32

func init() {
	identity.Register(identity.Module{Name: "idtest-misbehave", New: func() identity.Verifier {
		return &misbehavingVerifier{kind: "idtest-misbehave", released: &released}
	}})
	identity.Register(identity.Module{Name: "idtest-cleanup", New: func() identity.Verifier {
		return &cleanupVerifier{misbehavingVerifier{kind: "idtest-cleanup", released: &released}}
	}})
}

// newPluginResolver builds a Resolver with one verifier plugin block.
func newPluginResolver(t *testing.T, name, settings string) *identity.Resolver {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	r, err := identity.New(t.Context(), identity.Config{Verifiers: map[string]yaml.Node{name: *n.Content[0]}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestVerifierPluginContract checks the class "a verifier plugin cannot
// make a connection pass as more than the factor it verified, nor end the
// gateway": a factor of another kind (mtls, with a SPIFFE ID, or another
// plugin's) is refused with ErrInvalid, so `require: [mtls]` is never
// met by a plugin; a factor with no kind is given the verifier's; a panic
// (any value, or a runtime error) is an ErrInvalid error naming where,
// never the value. Before, the mtls factor selected the workload that
// requires mtls, the other plugin's kind was accepted, a factor with no
// kind met no `require:` and each panic went up to the caller (5 of 6
// failed).
func TestVerifierPluginContract(t *testing.T) {
	specs := []identity.Spec{
		{Name: "needs-mtls", Require: []string{identity.KindMTLS}},
		{Name: "needs-other", Require: []string{"idtest-other"}},
		{Name: "builder", Require: []string{"idtest-misbehave"}},
	}
	ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Attest x", ProxyAuthorizations: 1}
	for _, tc := range []struct {
		do       string
		wantName string // "" with wantErr
		wantErr  string
	}{
		{do: "fine", wantName: "builder"},
		{do: "kind-empty", wantName: "builder"},
		{do: "kind-mtls", wantErr: `factor of kind "mtls"`},
		{do: "kind-other-plugin", wantErr: `factor of kind "idtest-other"`},
		{do: "panic", wantErr: "the verifier panicked: a panic with a value of type string"},
		{do: "index", wantErr: "index out of range"},
	} {
		t.Run(tc.do, func(t *testing.T) {
			r := newPluginResolver(t, "idtest-misbehave", "do: "+tc.do)
			defer r.Close()
			var w identity.Workload
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = errors.New("Resolve panicked")
					}
				}()
				w, err = r.Resolve(t.Context(), ev, specs)
			}()
			if tc.wantErr == "" {
				if err != nil || w.Name != tc.wantName {
					t.Fatalf("Resolve = %q, %v; want %q", w.Name, err, tc.wantName)
				}
				return
			}
			if !errors.Is(err, identity.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Resolve = %q, %v; want an error wrapping ErrInvalid saying %q", w.Name, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), pluginSecret) {
				t.Errorf("the error holds the panic value: %v", err)
			}
			if w.Name != "" {
				t.Errorf("the connection was taken for workload %q", w.Name)
			}
		})
	}
}

// TestVerifierPluginReleased: a verifier plugin whose release is Cleanup
// (the lifecycle's name for it, as for providers and injectors) has it
// called when the identity configuration is replaced, and a panic in it
// is an error of Close, not a crash. Before, only Close was called: a
// Cleanup-only verifier leaked what it had started, and a panic in Close
// went up to the caller.
func TestVerifierPluginReleased(t *testing.T) {
	for _, do := range []string{"fine", "panic-cleanup"} {
		t.Run(do, func(t *testing.T) {
			before := released.Load()
			r := newPluginResolver(t, "idtest-cleanup", "do: "+do)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = errors.New("Close panicked")
					}
				}()
				err = r.Close()
			}()
			if got := released.Load() - before; got != 1 {
				t.Errorf("Cleanup ran %d times, want 1", got)
			}
			switch {
			case do == "fine" && err != nil:
				t.Errorf("Close: %v", err)
			case do == "panic-cleanup" && (err == nil || !strings.Contains(err.Error(), "panicked") || strings.Contains(err.Error(), pluginSecret)):
				t.Errorf("Close: %v, want an error saying Cleanup panicked, without its value", err)
			}
		})
	}
}

// hungVerifies is closed when TestVerifierPluginHangBounded ends.
var hungVerifies = make(chan struct{})

// TestVerifierPluginHangBounded: a verifier plugin whose Verify ignores
// its context and never returns fails the connection's identity with
// ErrUnavailable after identity.PluginVerifyTimeout, and connections it
// does not read (no Proxy-Authorization) resolve meanwhile. Before, the
// connection waited for as long as the plugin blocked: until its client
// gave up.
func TestVerifierPluginHangBounded(t *testing.T) {
	t.Cleanup(func() { close(hungVerifies) })
	r := newPluginResolver(t, "idtest-misbehave", "do: hang")
	defer r.Close()
	specs := []identity.Spec{{Name: "local", CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Attest x", ProxyAuthorizations: 1}
	bound := identity.PluginVerifyTimeout + 3*time.Second
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := r.Resolve(ctx, ev, specs)
		done <- err
	}()
	if w, err := r.Resolve(t.Context(), identity.Evidence{Source: ev.Source}, specs); err != nil || w.Name != "local" {
		t.Errorf("a connection the plugin does not read: %q, %v", w.Name, err)
	}
	err := <-done
	if took := time.Since(start); took > identity.PluginVerifyTimeout+2*time.Second {
		t.Errorf("Resolve returned after %s, want within %s", took, identity.PluginVerifyTimeout)
	}
	if !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "did not return within") {
		t.Errorf("Resolve: %v, want an error wrapping ErrUnavailable saying the verifier did not return", err)
	}
}
