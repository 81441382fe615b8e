// Package hellotoken is a tiny provider plugin defined outside the
// credgate repository's plugin lists: it reads a key from an environment
// variable of the gateway at each fetch and hands it out as a token that
// expires an hour later. It shows the shape of a provider: settings as
// yaml-tagged fields, Validate, Fetch that honours ctx and puts the value
// only in a providers.Secret, CheckSources so `credgate validate` reports
// a missing variable, and one registration in init. See
// docs/providers.md#writing-a-provider.
package hellotoken

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/credgate/credgate/providers"
)

// Name is the provider's registered name (`provider: hello-token`).
const Name = "hello-token"

func init() {
	providers.Register(providers.Module{
		Name:        Name,
		Doc:         "a token read from an environment variable, valid for an hour (an example plugin)",
		SettingDocs: map[string]string{"env": "the environment variable holding the token"},
		New:         func() providers.Provider { return new(Provider) },
	})
}

// Provider is the "hello-token" provider. Its exported fields are its
// settings.
type Provider struct {
	// Env names the environment variable holding the token.
	Env string `yaml:"env"`
}

// Validate rejects settings that cannot work.
func (p *Provider) Validate() error {
	if p.Env == "" {
		return errors.New("hello-token: set env to the environment variable holding the token")
	}
	return nil
}

// Fetch implements providers.Provider. The error names the variable,
// never its value.
func (p *Provider) Fetch(ctx context.Context, _ providers.Request) (*providers.Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v := os.Getenv(p.Env)
	if v == "" {
		return nil, providers.CheckEnv("hello-token: env", p.Env) // wraps providers.ErrNotConfigured
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)},
		Expiry: time.Now().Add(time.Hour),
	}, nil
}

// CheckSources implements providers.SourceChecker: `credgate validate`
// reports an unset variable at the env setting's line.
func (p *Provider) CheckSources() []providers.SourceProblem {
	if err := providers.CheckEnv("hello-token: env", p.Env); err != nil {
		return []providers.SourceProblem{{Setting: "env", Err: err}}
	}
	return nil
}

// Interface guards.
var (
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.SourceChecker = (*Provider)(nil)
)
