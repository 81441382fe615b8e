package anthropic

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
	return injectortest.Load(t, "anthropic", settings)
}

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings string
		cred           *providers.Credential
		client, want   http.Header
		wantErr        error
	}{
		{name: "key and default version replace the client's", cred: cred("token", key),
			client: http.Header{"X-Api-Key": {"placeholder"}, "Anthropic-Version": {"2000-01-01"}, "Authorization": {"Bearer placeholder"}, "Anthropic-Beta": {"x"}},
			want:   http.Header{"X-Api-Key": {key}, "Anthropic-Version": {DefaultVersion}, "Anthropic-Beta": {"x"}}},
		{name: "pinned version, custom field", settings: "version: '2024-10-22'\nfield: api_key", cred: cred("api_key", key),
			want: http.Header{"X-Api-Key": {key}, "Anthropic-Version": {"2024-10-22"}}},
		{name: "missing field", cred: cred("other", key), wantErr: injectors.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := load(t, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "https://api.anthropic.com/v1/messages", nil)
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
		"":                "",
		"field: 'a-b'":    "not a field name",
		"version: latest": "must be a date",
		"versions: x":     `unknown field "versions"`,
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
