package policy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Test-only modules, registered under names no real module uses, so the
// policy tests do not depend on the built-in providers and injectors.
const (
	testProviderName = "policytest"
	testInjectorName = "policytest-inj"
)

func init() {
	providers.Register(providers.Module{Name: testProviderName, New: func() providers.Provider { return &testProvider{} }})
	injectors.Register(injectors.Module{Name: testInjectorName, New: func() injectors.Injector { return &testInjector{} }})
}

// testProvider returns Value as the token. Fail makes Validate fail with
// that message; Cleanups counts Cleanup calls.
type testProvider struct {
	Value string `yaml:"value"`
	Fail  string `yaml:"fail"`
	// Extra takes any YAML (TestCredentialVersionCoversEverySetting).
	Extra yaml.Node `yaml:"extra"`

	cleanups atomic.Int32
}

func (p *testProvider) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(p.Value)}}, nil
}

// builtProviders maps each testProvider's Value to the instance, so tests
// can see providers built by a Parse that then failed.
var builtProviders sync.Map

func (p *testProvider) Validate() error {
	builtProviders.Store(p.Value, p)
	if p.Fail != "" {
		return errors.New(p.Fail)
	}
	return nil
}

func (p *testProvider) Cleanup() error {
	p.cleanups.Add(1)
	return nil
}

// testInjector sets Header (default X-Test) to the token.
type testInjector struct {
	Header string `yaml:"header"`
}

func (i *testInjector) Inject(r *http.Request, cred *providers.Credential) error {
	tok, ok := cred.Field(providers.FieldToken)
	if !ok {
		return injectors.ErrMissingField
	}
	h := i.Header
	if h == "" {
		h = "X-Test"
	}
	r.Header.Set(h, tok.Reveal())
	return nil
}

var (
	_ providers.Provider     = (*testProvider)(nil)
	_ providers.Validator    = (*testProvider)(nil)
	_ providers.CleanerUpper = (*testProvider)(nil)
	_ injectors.Injector     = (*testInjector)(nil)
)

// composeProvider reads its inputs (providers.Composer) and joins their
// tokens with "+".
type composeProvider struct {
	From []string `yaml:"from"`

	inputs map[string]providers.Provider
}

const testComposeName = "policytest-compose"

func init() {
	providers.Register(providers.Module{Name: testComposeName, New: func() providers.Provider { return &composeProvider{} }})
}

func (p *composeProvider) Inputs() []string { return p.From }

func (p *composeProvider) SetInputs(in map[string]providers.Provider) { p.inputs = in }

func (p *composeProvider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	var parts []string
	for _, name := range p.From {
		in, ok := p.inputs[name]
		if !ok {
			return nil, errors.New("compose: input " + name + " not set")
		}
		r := req
		r.Credential = name
		c, err := in.Fetch(ctx, r)
		if err != nil {
			return nil, err
		}
		tok, _ := c.Field(providers.FieldToken)
		parts = append(parts, tok.Reveal())
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(strings.Join(parts, "+"))}}, nil
}

var _ providers.Composer = (*composeProvider)(nil)
