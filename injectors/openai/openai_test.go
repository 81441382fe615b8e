package openai

import (
	"net/http"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const key = "sk-proj-s3cr3t"

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	injectortest.Run(t, "openai", "https://api.openai.com/v1/chat/completions", []injectortest.Case{
		{Name: "key only; the client's organization passes", Cred: cred("token", key),
			Client: http.Header{"Authorization": {"Bearer placeholder"}, "Openai-Organization": {"org-client"}},
			Want:   http.Header{"Authorization": {"Bearer " + key}, "Openai-Organization": {"org-client"}}},
		{Name: "organization and project pinned", Settings: "organization: org-1\nproject: '{{.project}}'",
			Cred:   cred("token", key, "project", "proj_9"),
			Client: http.Header{"Openai-Organization": {"org-client"}, "Openai-Project": {"proj_client"}},
			Want:   http.Header{"Authorization": {"Bearer " + key}, "Openai-Organization": {"org-1"}, "Openai-Project": {"proj_9"}}},
		{Name: "custom field", Settings: "field: api_key", Cred: cred("api_key", key),
			Want: http.Header{"Authorization": {"Bearer " + key}}},
		{Name: "missing project field: nothing set", Settings: "project: '{{.project}}'", Cred: cred("token", key),
			Client: http.Header{"Authorization": {"Bearer placeholder"}}, WantErr: injectors.ErrMissingField},
	})
}

func TestSettings(t *testing.T) {
	injectortest.CheckSettings(t, "openai", map[string]string{
		"":                     "",
		"field: 'a b'":         "not a field name",
		"organization: '{{.x'": "not a valid template",
		"organisation: org-1":  `unknown field "organisation"`,
		"project: \"a\\nb\"":   "line break",
	})
}
