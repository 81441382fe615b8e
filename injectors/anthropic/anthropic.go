// Package anthropic is the "anthropic" injector: the Anthropic API key in
// x-api-key and the API version in anthropic-version, pinned by the
// policy.
//
//	as: anthropic
//	field: token          # default: the credential field with the key
//	version: "2023-06-01" # default
//
// The client's x-api-key, anthropic-version and Authorization headers
// are removed: the gateway's key is the only credential the API sees.
package anthropic

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "anthropic",
		Doc: "Anthropic API key as x-api-key, with anthropic-version pinned by the policy",
		SettingDocs: map[string]string{
			"field":   `credential field holding the API key (default "token")`,
			"version": "anthropic-version to send",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// DefaultVersion is the anthropic-version sent when the policy names none.
const DefaultVersion = "2023-06-01"

// Injector puts an Anthropic API key on requests.
type Injector struct {
	// Field is the credential field holding the API key. Default "token".
	Field string `yaml:"field"`
	// Version is the anthropic-version header. Default DefaultVersion.
	Version string `yaml:"version"`

	set   *injectors.HeaderSet
	names []string
}

var (
	fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	version   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// Provision compiles the headers.
func (i *Injector) Provision() error {
	if i.Field == "" {
		i.Field = providers.FieldToken
	}
	if i.Version == "" {
		i.Version = DefaultVersion
	}
	if !fieldName.MatchString(i.Field) {
		return fmt.Errorf("anthropic: field %q is not a field name (letters, digits, _)", i.Field)
	}
	if !version.MatchString(i.Version) {
		return errors.New(`anthropic: version must be a date such as "2023-06-01"`)
	}
	set, err := injectors.CompileHeaders("anthropic", map[string]string{
		"X-Api-Key":         "{{." + i.Field + "}}",
		"Anthropic-Version": i.Version,
	})
	if err != nil {
		return err
	}
	i.set = set
	i.names = append([]string{"Authorization"}, set.Names()...)
	return nil
}

// Inject renders the key, then sets both headers.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	rh, err := i.set.Render("anthropic", cred)
	if err != nil {
		return err
	}
	rh.Set(r)
	return nil
}

// Headers implements injectors.HeaderNames. Authorization is listed so a
// client's bearer token is removed too; the injector does not set it.
func (i *Injector) Headers() []string { return i.names }

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
)
