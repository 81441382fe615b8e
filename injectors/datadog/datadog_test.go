package datadog

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

const (
	apiKey = "0123456789abcdef0123456789abcdef"
	appKey = "0123456789abcdef0123456789abcdef01234567"
)

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings, url string
		cred                *providers.Credential
		want                http.Header
		wantErr             error
	}{
		{name: "both keys; the client's copies go", url: "https://api.datadoghq.com/api/v1/validate", cred: cred("api_key", apiKey, "app_key", appKey),
			want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{name: "EU site", settings: "site: datadoghq.eu", url: "https://api.datadoghq.eu/api/v2/users", cred: cred("api_key", apiKey, "app_key", appKey),
			want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{name: "API key only (intake)", settings: "api_key_only: true", url: "https://http-intake.logs.us5.datadoghq.com/api/v2/logs", cred: cred("api_key", apiKey),
			want: http.Header{"Dd-Api-Key": {apiKey}}},
		{name: "renamed fields", settings: "api_key_field: dd_api\napp_key_field: dd_app", url: "https://api.ddog-gov.com/api/v1/validate", cred: cred("dd_api", apiKey, "dd_app", appKey),
			want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{name: "not a Datadog host", url: "https://datadoghq.com.evil.example/api/v1/validate", cred: cred("api_key", apiKey, "app_key", appKey), wantErr: injectors.ErrInvalidValue},
		{name: "host of another site", settings: "site: datadoghq.eu", url: "https://api.datadoghq.com/api/v1/validate", cred: cred("api_key", apiKey, "app_key", appKey), wantErr: injectors.ErrInvalidValue},
		{name: "keys swapped", url: "https://api.datadoghq.com/api/v1/validate", cred: cred("api_key", appKey, "app_key", apiKey), wantErr: injectors.ErrInvalidValue},
		{name: "application key missing", url: "https://api.datadoghq.com/api/v1/validate", cred: cred("api_key", apiKey), wantErr: injectors.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := injectortest.Load(t, Name, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", tt.url, nil)
			r.Header.Set("DD-API-KEY", "placeholder")
			r.Header.Set("DD-APPLICATION-KEY", "placeholder")
			err = injectors.Apply(inj, r, tt.cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), appKey) {
					t.Fatalf("error %v, want %v without a key", err, tt.wantErr)
				}
				if len(r.Header) != 0 {
					t.Errorf("a failed injection left headers %v", r.Header)
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

func TestCheckHost(t *testing.T) {
	for _, tt := range []struct{ site, host, want string }{
		{"", "api.datadoghq.com", ""},
		{"", "api.us3.datadoghq.com", ""},
		{"", "*.datadoghq.eu", ""},
		{"", "api.ap1.datadoghq.com", ""},
		{"", "api.ddog-gov.com", ""},
		{"us5.datadoghq.com", "api.us5.datadoghq.com", ""},
		{"datadoghq.com", "api.datadoghq.com", ""},
		{"", "api.example.com", "not a Datadog site host"},
		{"", "datadoghq.com.example.org", "not a Datadog site host"},
		{"", "evildatadoghq.com", "not a Datadog site host"},
		{"datadoghq.com", "api.us5.datadoghq.com", "on site us5.datadoghq.com"},
		{"datadoghq.com", "*.datadoghq.com", "covers the regional sites"},
	} {
		inj := &Injector{Site: tt.site}
		err := inj.CheckHost(tt.host)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("site %q host %q: %q, want %q", tt.site, tt.host, got, tt.want)
		}
	}
}

func TestSettings(t *testing.T) {
	for settings, want := range map[string]string{
		"":                      "",
		"site: datadoghq.eu":    "",
		"site: datadoghq.de":    "not a Datadog site",
		"api_key_field: 'a-b'":  "not a field name",
		"sites: [datadoghq.eu]": `unknown field "sites"`,
	} {
		_, err := injectortest.Load(t, Name, settings)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%q: error %q, want %q", settings, got, want)
		}
	}
}

func BenchmarkInject(b *testing.B) {
	inj, err := injectortest.Load(b, Name, "")
	if err != nil {
		b.Fatal(err)
	}
	c := cred("api_key", apiKey, "app_key", appKey)
	r := httptest.NewRequest("GET", "https://api.datadoghq.com/api/v1/validate", nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := injectors.Apply(inj, r, c); err != nil {
			b.Fatal(err)
		}
	}
}
