// Package static is the "static" credential provider: a value read from an
// environment variable or a file. It is meant for development and for
// secrets the platform mounts into the gateway's container (a Kubernetes
// Secret volume, a Docker secret); it fetches nothing short-lived, so
// production credentials should come from a real provider (vault,
// awssts, oauth2).
//
// Settings (exactly one of):
//
//	provider: static
//	env: STRIPE_KEY            # the value of this environment variable
//	file: /run/secrets/stripe  # the contents of this file, trailing newlines trimmed
//
// A relative file path is used as given (relative to the gateway's
// working directory). The file is read again on every Fetch, so a rotated
// mounted secret takes effect at the next cache refresh. The credential
// has one field, providers.FieldToken, and no expiry (the cache applies
// its default TTL).
package static

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{
		Name: "static",
		Doc:  "a value from an environment variable or a file, for development and platform-mounted secrets",
		SettingDocs: map[string]string{
			"env":  "environment variable holding the value",
			"file": "path of a file holding the value",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Provider reads a credential from an environment variable or a file.
type Provider struct {
	// Env names the environment variable holding the value.
	Env string `yaml:"env"`
	// File is the path of a file holding the value.
	File string `yaml:"file"`
}

// Validate checks that exactly one of env and file is set.
func (p *Provider) Validate() error {
	switch {
	case p.Env == "" && p.File == "":
		return errors.New("static: set one of env (an environment variable name) or file (a path)")
	case p.Env != "" && p.File != "":
		return errors.New("static: set only one of env and file, not both")
	case p.Env != "" && strings.ContainsAny(p.Env, "= \x00"):
		return fmt.Errorf("static: env %q is not a valid environment variable name", p.Env)
	}
	return nil
}

// Fetch returns the current value as the token field. A variable that is
// unset or empty, or a file that is missing or empty, is an error wrapping
// providers.ErrUnavailable and providers.ErrNotConfigured that names the
// variable or file (never the value) and says how to set it.
func (p *Provider) Fetch(ctx context.Context, _ providers.Request) (*providers.Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	var v string
	if p.Env != "" {
		v = os.Getenv(p.Env)
		if v == "" {
			return nil, fmt.Errorf("static: environment variable %s is not set or empty in the gateway's environment; export it before starting credgate serve (or use file:): %w%.0w", p.Env, providers.ErrNotConfigured, providers.ErrUnavailable)
		}
	} else {
		b, err := os.ReadFile(p.File)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("static: file %s does not exist; create it holding the credential: %w%.0w", p.File, providers.ErrNotConfigured, providers.ErrUnavailable)
		case err != nil:
			// *fs.PathError names the operation, path and cause only.
			return nil, fmt.Errorf("static: %w: %w", err, providers.ErrUnavailable)
		}
		v = strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return nil, fmt.Errorf("static: file %s is empty; write the credential into it: %w%.0w", p.File, providers.ErrNotConfigured, providers.ErrUnavailable)
		}
	}
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}}, nil
}

// Interface guards.
var (
	_ providers.Provider  = (*Provider)(nil)
	_ providers.Validator = (*Provider)(nil)
)
