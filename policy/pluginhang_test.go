package policy

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{Name: "policytest-hang", New: func() providers.Provider { return new(hangProvider) }})
	injectors.Register(injectors.Module{Name: "policytest-hang-inj", New: func() injectors.Injector { return new(hangInjector) }})
}

// hungSteps is closed when TestHungPluginStepBounded ends: the plugins'
// hung calls return then.
var hungSteps = make(chan struct{})

// hangProvider blocks, ignoring its context, in the method `in` names.
type hangProvider struct {
	In string `yaml:"in"`
}

func (p *hangProvider) maybe(m string) {
	if p.In == m {
		<-hungSteps
	}
}

func (p *hangProvider) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("x")}}, nil
}
func (p *hangProvider) Provision(context.Context) error         { p.maybe("Provision"); return nil }
func (p *hangProvider) Validate() error                         { p.maybe("Validate"); return nil }
func (p *hangProvider) CheckSources() []providers.SourceProblem { p.maybe("CheckSources"); return nil }

// Inputs and SetInputs make it a Composer (reading no credential), so
// that the steps of wiring composed credentials can hang too.
func (p *hangProvider) Inputs() []string                        { p.maybe("Inputs"); return nil }
func (p *hangProvider) SetInputs(map[string]providers.Provider) { p.maybe("SetInputs") }

// hangInjector blocks in CheckHost when its `in` says so.
type hangInjector struct {
	In string `yaml:"in"`
}

func (i *hangInjector) Inject(*http.Request, *providers.Credential) error { return nil }
func (i *hangInjector) Provision() error {
	if i.In == "Provision" {
		<-hungSteps
	}
	return nil
}
func (i *hangInjector) CheckHost(string) error {
	if i.In == "CheckHost" {
		<-hungSteps
	}
	return nil
}

var (
	_ providers.SourceChecker = (*hangProvider)(nil)
	_ providers.Composer      = (*hangProvider)(nil)
	_ injectors.HostChecker   = (*hangInjector)(nil)
)

// TestHungPluginStepBounded checks the class "a plugin step that never
// returns while a policy loads fails that load, it does not hold it": a
// provider's Provision, Validate, Inputs or SetInputs (the wiring of a
// composed credential), an injector's Provision or CheckHost that blocks (ignoring its context) fails a reload within the step
// bound (module.WithStepTimeout) with an error naming the plugin, the
// step and the bound, and the last good policy stays in force; the same
// policy fails the start-up (NewStore) likewise; a provider's
// CheckSources that blocks is reported as that credential's source
// problem. Before, each of them held the reload (the gateway never loaded
// another policy), the start-up or `credgate validate` for as long as
// the plugin blocked (5 of 5 cases hung; Inputs and SetInputs, added
// later, 2 of 2).
func TestHungPluginStepBounded(t *testing.T) {
	const step = 100 * time.Millisecond
	bound := step + 5*time.Second // slack for a loaded machine
	ctx := module.WithStepTimeout(context.Background(), step)
	within := func(t *testing.T, what string, fn func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			return err
		case <-time.After(bound):
			t.Fatalf("%s did not return within %s", what, bound)
			return nil
		}
	}
	withHang := func(cred, inj string) string {
		return strings.Replace(strings.Replace(storePolicy(1),
			"c: {provider: policytest, value: x}", "c: {provider: policytest-hang, in: "+cred+"}", 1),
			"as: policytest-inj}", "as: policytest-hang-inj, in: "+inj+"}", 1)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, storePolicy(1))
	s := newTestStore(t, path, StoreOptions{})
	// Registered after the store's Close: runs before it, so that a
	// reload still hung (before the fix) does not hold that Close.
	t.Cleanup(func() { close(hungSteps) })
	good := s.Current()
	for _, tc := range []struct{ cred, inj, want string }{
		{"Provision", "none", `provider "policytest-hang": Provision`},
		{"Validate", "none", `provider "policytest-hang": Validate`},
		{"Inputs", "none", `provider "policytest-hang": Inputs`},
		{"SetInputs", "none", `provider "policytest-hang": SetInputs`},
		{"none", "Provision", `injector "policytest-hang-inj": Provision`},
		{"none", "CheckHost", `injector "policytest-hang-inj": CheckHost`},
	} {
		t.Run(tc.cred+"/"+tc.inj, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, module.ErrAbandoned) {
					t.Fatalf("%s: %v, want an error wrapping module.ErrAbandoned", what, err)
				}
				for _, want := range []string{tc.want, "not returned within " + step.String()} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: %v, want it to say %q", what, err, want)
					}
				}
			}
			writeFile(t, path, withHang(tc.cred, tc.inj))
			check("Reload", within(t, "the reload", func() error { return s.Reload(ctx) }))
			if s.Current() != good {
				t.Errorf("the last good policy is no longer in force")
			}
			check("NewStore", within(t, "the start-up", func() error {
				s2, err := NewStore(ctx, path, StoreOptions{Logger: quietLogger()})
				if err == nil {
					s2.Close()
				}
				return err
			}))
		})
	}
	t.Run("CheckSources", func(t *testing.T) {
		p, err := Parse(ctx, "p.yaml", []byte(withHang("CheckSources", "none")))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var probs ErrorList
		_ = within(t, "SourceProblems", func() error { probs = p.SourceProblems(); return nil })
		if len(probs) != 1 || !errors.Is(probs[0], module.ErrAbandoned) || !strings.Contains(probs.Error(), `credential "c": provider "policytest-hang": CheckSources`) {
			t.Errorf("SourceProblems = %v, want one problem saying CheckSources was abandoned", probs)
		}
	})
}
