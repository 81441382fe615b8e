package datadog

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const (
	apiKey = "0123456789abcdef0123456789abcdef"
	appKey = "0123456789abcdef0123456789abcdef01234567"
)

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	cases := []injectortest.Case{
		{Name: "both keys; the client's copies go", URL: "https://api.datadoghq.com/api/v1/validate", Cred: cred("api_key", apiKey, "app_key", appKey),
			Want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{Name: "EU site", Settings: "site: datadoghq.eu", URL: "https://api.datadoghq.eu/api/v2/users", Cred: cred("api_key", apiKey, "app_key", appKey),
			Want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{Name: "API key only (intake)", Settings: "api_key_only: true", URL: "https://http-intake.logs.us5.datadoghq.com/api/v2/logs", Cred: cred("api_key", apiKey),
			Want: http.Header{"Dd-Api-Key": {apiKey}}},
		{Name: "renamed fields", Settings: "api_key_field: dd_api\napp_key_field: dd_app", URL: "https://api.ddog-gov.com/api/v1/validate", Cred: cred("dd_api", apiKey, "dd_app", appKey),
			Want: http.Header{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}}},
		{Name: "not a Datadog host", URL: "https://datadoghq.com.evil.example/api/v1/validate", Cred: cred("api_key", apiKey, "app_key", appKey), WantErr: ErrNotDatadogHost},
		{Name: "host of another site", Settings: "site: datadoghq.eu", URL: "https://api.datadoghq.com/api/v1/validate", Cred: cred("api_key", apiKey, "app_key", appKey), WantErr: ErrNotDatadogHost},
		{Name: "keys swapped", URL: "https://api.datadoghq.com/api/v1/validate", Cred: cred("api_key", appKey, "app_key", apiKey), WantErr: injectors.ErrInvalidValue},
		{Name: "application key missing", URL: "https://api.datadoghq.com/api/v1/validate", Cred: cred("api_key", apiKey), WantErr: injectors.ErrMissingField},
	}
	for i := range cases {
		// The client sends placeholders for both keys; they never pass,
		// and a failed injection leaves no key header at all.
		cases[i].Method = http.MethodGet
		cases[i].Client = http.Header{"Dd-Api-Key": {"placeholder"}, "Dd-Application-Key": {"placeholder"}}
		if cases[i].WantErr != nil {
			cases[i].Want = http.Header{}
		}
	}
	injectortest.Run(t, Name, "", cases)
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
	injectortest.CheckSettings(t, Name, map[string]string{
		"":                      "",
		"site: datadoghq.eu":    "",
		"site: datadoghq.de":    "not a Datadog site",
		"api_key_field: 'a-b'":  "not a field name",
		"sites: [datadoghq.eu]": `unknown field "sites"`,
	})
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
