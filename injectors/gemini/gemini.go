// Package gemini is the "gemini" injector: the Gemini API
// (generativelanguage.googleapis.com) key in x-goog-api-key.
//
//	as: gemini
//	field: token   # default: the credential field with the key
//
// The client's x-goog-api-key and Authorization headers and its key=
// query parameter (the API's other way to take a key) are removed.
// Vertex AI uses OAuth2 tokens instead: the google provider with bearer.
package gemini

import (
	"fmt"
	"net/http"
	"regexp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "gemini",
		Doc:         "Gemini API key as x-goog-api-key (the client's Authorization and key= parameter removed)",
		SettingDocs: map[string]string{"field": `credential field holding the API key (default "token")`},
		New:         func() injectors.Injector { return new(Injector) }})
}

// Injector puts a Gemini API key on requests.
type Injector struct {
	// Field is the credential field holding the API key. Default "token".
	Field string `yaml:"field"`

	set   *injectors.HeaderSet
	names []string
}

var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Provision compiles the header.
func (i *Injector) Provision() error {
	if i.Field == "" {
		i.Field = providers.FieldToken
	}
	if !fieldName.MatchString(i.Field) {
		return fmt.Errorf("gemini: field %q is not a field name (letters, digits, _)", i.Field)
	}
	set, err := injectors.CompileHeaders("gemini", map[string]string{"X-Goog-Api-Key": "{{." + i.Field + "}}"})
	if err != nil {
		return err
	}
	i.set = set
	i.names = append([]string{"Authorization"}, set.Names()...)
	return nil
}

// Inject renders the key, then sets the header and drops a client key=.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	rh, err := i.set.Render("gemini", cred)
	if err != nil {
		return err
	}
	rh.Set(r)
	if r.URL.RawQuery != "" {
		r.URL.RawQuery = injectors.WithoutParams(r.URL.RawQuery, "key")
	}
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
