// Package openai is the "openai" injector: the OpenAI API key as
// "Authorization: Bearer", and optionally the organization and project
// the requests are billed to (OpenAI-Organization, OpenAI-Project), so
// applications hold neither the key nor the choice of organization.
//
//	as: openai
//	field: token                  # default: the credential field with the key
//	organization: org-123         # optional; a template over fields too
//	project: proj_abc             # optional
//
// Without organization (project), the client's OpenAI-Organization
// (OpenAI-Project) header, if any, is passed on: the key alone decides
// what it may reach. With it, the client's copy is replaced.
package openai

import (
	"fmt"
	"net/http"
	"regexp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "openai",
		Doc: "OpenAI API key as Bearer, with OpenAI-Organization and OpenAI-Project pinned by the policy",
		SettingDocs: map[string]string{
			"field":        `credential field holding the API key (default "token")`,
			"organization": "OpenAI-Organization to send (the client's is removed)",
			"project":      "OpenAI-Project to send (the client's is removed)",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Injector puts an OpenAI API key on requests.
type Injector struct {
	// Field is the credential field holding the API key. Default "token".
	Field string `yaml:"field"`
	// Organization, if set, is sent as OpenAI-Organization (a constant
	// or a template over the credential's fields).
	Organization string `yaml:"organization"`
	// Project, if set, is sent as OpenAI-Project.
	Project string `yaml:"project"`

	set *injectors.HeaderSet
}

var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Provision compiles the headers.
func (i *Injector) Provision() error {
	if i.Field == "" {
		i.Field = providers.FieldToken
	}
	if !fieldName.MatchString(i.Field) {
		return fmt.Errorf("openai: field %q is not a field name (letters, digits, _)", i.Field)
	}
	h := map[string]string{"Authorization": "Bearer {{." + i.Field + "}}"}
	if i.Organization != "" {
		h["OpenAI-Organization"] = i.Organization
	}
	if i.Project != "" {
		h["OpenAI-Project"] = i.Project
	}
	set, err := injectors.CompileHeaders("openai", h)
	if err != nil {
		return err
	}
	i.set = set
	return nil
}

// Inject renders every header, then sets them.
func (i *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	rh, err := i.set.Render("openai", cred)
	if err != nil {
		return err
	}
	rh.Set(r)
	return nil
}

// Headers implements injectors.HeaderNames.
func (i *Injector) Headers() []string { return i.set.Names() }

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
)
