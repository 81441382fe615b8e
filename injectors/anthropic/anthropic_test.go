package anthropic

import (
	"net/http"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const key = "sk-proj-s3cr3t"

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	injectortest.Run(t, "anthropic", "https://api.anthropic.com/v1/messages", []injectortest.Case{
		{Name: "key and default version replace the client's", Cred: cred("token", key),
			Client: http.Header{"X-Api-Key": {"placeholder"}, "Anthropic-Version": {"2000-01-01"}, "Authorization": {"Bearer placeholder"}, "Anthropic-Beta": {"x"}},
			Want:   http.Header{"X-Api-Key": {key}, "Anthropic-Version": {DefaultVersion}, "Anthropic-Beta": {"x"}}},
		{Name: "pinned version, custom field", Settings: "version: '2024-10-22'\nfield: api_key", Cred: cred("api_key", key),
			Want: http.Header{"X-Api-Key": {key}, "Anthropic-Version": {"2024-10-22"}}},
		{Name: "missing field", Cred: cred("other", key), WantErr: injectors.ErrMissingField},
	})
}

func TestSettings(t *testing.T) {
	injectortest.CheckSettings(t, "anthropic", map[string]string{
		"":                "",
		"field: 'a-b'":    "not a field name",
		"version: latest": "must be a date",
		"versions: x":     `unknown field "versions"`,
	})
}
