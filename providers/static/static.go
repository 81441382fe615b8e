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
//	fields:                    # several fields, each from its own env or file
//	  api_key: {env: DD_API_KEY}
//	  app_key: {file: /run/secrets/dd-app-key}
//
// A relative file path is used as given (relative to the gateway's
// working directory). The file is read again on every Fetch, so a rotated
// mounted secret takes effect at the next cache refresh. The credential
// has one field, providers.FieldToken (or the fields named in fields:),
// and no expiry (the cache applies
// its default TTL).
package static

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{
		Name: "static",
		Doc:  "a value from an environment variable or a file, for development and platform-mounted secrets",
		SettingDocs: map[string]string{
			"env":    "environment variable holding the value",
			"file":   "path of a file holding the value",
			"fields": "several named fields of one credential, each {env: VAR} or {file: PATH}",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Provider reads a credential from an environment variable or a file,
// or several named fields each from its own variable or file.
type Provider struct {
	// Env names the environment variable holding the value.
	Env string `yaml:"env"`
	// File is the path of a file holding the value.
	File string `yaml:"file"`
	// Fields, instead of env or file, names several fields of one
	// credential, each read from its own env or file, for injectors that
	// need more than one value (an API key and an application key, a key
	// and an HMAC secret).
	Fields map[string]Source `yaml:"fields"`
}

// Source is where one field of a fields: credential is read from.
type Source struct {
	// Env names the environment variable holding the value.
	Env string `yaml:"env"`
	// File is the path of a file holding the value.
	File string `yaml:"file"`
}

// Validate checks that exactly one of env, file and fields is set, and
// that each field has exactly one of env and file.
func (p *Provider) Validate() error {
	if p.Fields != nil {
		if p.Env != "" || p.File != "" {
			return errors.New("static: set fields, or one of env and file, not both")
		}
		if len(p.Fields) == 0 {
			return errors.New("static: fields is empty; name at least one, e.g. fields: {api_key: {env: DD_API_KEY}}")
		}
		for name, src := range p.Fields {
			if name == "" {
				return errors.New("static: a field name is empty")
			}
			if err := src.validate("field " + name + ": "); err != nil {
				return err
			}
		}
		return nil
	}
	return Source{Env: p.Env, File: p.File}.validate("")
}

func (s Source) validate(where string) error {
	switch {
	case s.Env == "" && s.File == "":
		return fmt.Errorf("static: %sset one of env (an environment variable name) or file (a path)", where)
	case s.Env != "" && s.File != "":
		return fmt.Errorf("static: %sset only one of env and file, not both", where)
	case s.Env != "" && strings.ContainsAny(s.Env, "= \x00"):
		return fmt.Errorf("static: %senv %q is not a valid environment variable name", where, s.Env)
	}
	return nil
}

// Fetch returns the current value as the token field, or with fields:
// every named field. A variable that is unset or empty, or a file that is
// missing or empty, is an error wrapping providers.ErrUnavailable and
// providers.ErrNotConfigured that names the variable or file (never the
// value) and says how to set it.
func (p *Provider) Fetch(ctx context.Context, _ providers.Request) (*providers.Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	if p.Fields == nil {
		v, err := Source{Env: p.Env, File: p.File}.read(ctx)
		if err != nil {
			return nil, err
		}
		return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(v)}}, nil
	}
	fields := make(map[string]providers.Secret, len(p.Fields))
	for name, src := range p.Fields {
		v, err := src.read(ctx)
		if err != nil {
			return nil, err
		}
		fields[name] = providers.NewSecret(v)
	}
	return &providers.Credential{Fields: fields}, nil
}

func (s Source) read(ctx context.Context) (string, error) {
	if s.Env != "" {
		v := os.Getenv(s.Env)
		if v == "" {
			return "", fmt.Errorf("static: environment variable %s is not set or empty in the gateway's environment; export it before starting credgate serve (or use file:): %w%.0w", s.Env, providers.ErrNotConfigured, providers.ErrUnavailable)
		}
		return v, nil
	}
	b, err := cfgfile.ReadSecretContext(ctx, s.File)
	switch {
	case errors.Is(err, cfgfile.ErrNotRegular), errors.Is(err, cfgfile.ErrTooLarge):
		// cfgfile's words name the path, what it is and the fix.
		return "", fmt.Errorf("static: file: %w: %w%.0w", err, providers.ErrNotConfigured, providers.ErrUnavailable)
	case errors.Is(err, fs.ErrNotExist):
		where := ""
		if !filepath.IsAbs(s.File) {
			if wd, err := os.Getwd(); err == nil {
				where = " (relative to the gateway's working directory " + wd + ")"
			}
		}
		return "", fmt.Errorf("static: file %s%s does not exist; create it holding the credential: %w%.0w", s.File, where, providers.ErrNotConfigured, providers.ErrUnavailable)
	case err != nil:
		// *fs.PathError names the operation, path and cause only.
		return "", fmt.Errorf("static: %w: %w", err, providers.ErrUnavailable)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("static: file %s is empty; write the credential into it: %w%.0w", s.File, providers.ErrNotConfigured, providers.ErrUnavailable)
	}
	return v, nil
}

// CheckSources reads every variable and file the credential names, as
// Fetch does, and reports each that is unset, missing, unreadable or
// empty (providers.SourceChecker), in the order of the field names.
func (p *Provider) CheckSources() []providers.SourceProblem {
	if p.Fields == nil {
		return Source{Env: p.Env, File: p.File}.check("")
	}
	names := make([]string, 0, len(p.Fields))
	for name := range p.Fields {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []providers.SourceProblem
	for _, name := range names {
		out = append(out, p.Fields[name].check("fields."+name+".")...)
	}
	return out
}

// check reports s's variable or file when it cannot be read, and the
// file when its mode is loose (a warning); prefix is the path of s's
// settings ("" or "fields.NAME.").
func (s Source) check(prefix string) []providers.SourceProblem {
	if s.Env == "" {
		return providers.CheckSecretFile("static", prefix+"file", s.File, "the credential")
	}
	if err := providers.CheckEnv("static: "+prefix+"env", s.Env); err != nil {
		return []providers.SourceProblem{{Setting: prefix + "env", Err: err}}
	}
	return nil
}

// Interface guards.
var (
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.SourceChecker = (*Provider)(nil)
)
