package openai

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/providers"
)

const key = "sk-proj-s3cr3t"

func load(t *testing.T, settings string) (injectors.Injector, error) {
	t.Helper()
	return injectortest.Load(t, "openai", settings)
}

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings string
		cred           *providers.Credential
		client, want   http.Header
		wantErr        error
	}{
		{name: "key only; the client's organization passes", cred: cred("token", key),
			client: http.Header{"Authorization": {"Bearer placeholder"}, "Openai-Organization": {"org-client"}},
			want:   http.Header{"Authorization": {"Bearer " + key}, "Openai-Organization": {"org-client"}}},
		{name: "organization and project pinned", settings: "organization: org-1\nproject: '{{.project}}'",
			cred:   cred("token", key, "project", "proj_9"),
			client: http.Header{"Openai-Organization": {"org-client"}, "Openai-Project": {"proj_client"}},
			want:   http.Header{"Authorization": {"Bearer " + key}, "Openai-Organization": {"org-1"}, "Openai-Project": {"proj_9"}}},
		{name: "custom field", settings: "field: api_key", cred: cred("api_key", key),
			want: http.Header{"Authorization": {"Bearer " + key}}},
		{name: "missing project field: nothing set", settings: "project: '{{.project}}'", cred: cred("token", key),
			client: http.Header{"Authorization": {"Bearer placeholder"}}, wantErr: injectors.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := load(t, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "https://api.openai.com/v1/chat/completions", nil)
			for k, v := range tt.client {
				r.Header[k] = v
			}
			err = injectors.Apply(inj, r, tt.cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || strings.Contains(err.Error(), key) {
					t.Fatalf("error %v, want %v without the key", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, r.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	for settings, want := range map[string]string{
		"":                     "",
		"field: 'a b'":         "not a field name",
		"organization: '{{.x'": "not a valid template",
		"organisation: org-1":  `unknown field "organisation"`,
		"project: \"a\\nb\"":   "line break",
	} {
		_, err := load(t, settings)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%q: error %q, want %q", settings, got, want)
		}
	}
}
