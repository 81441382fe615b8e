package injectors

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/providers"
)

func TestHeadersInject(t *testing.T) {
	const dd = "headers:\n  DD-API-KEY: '{{.api_key}}'\n  dd-application-key: '{{.app_key}}'\n"
	tests := []struct {
		name        string
		settings    string
		cred        *providers.Credential
		header      http.Header // the client's
		wantHeader  http.Header
		wantHeaders []string
		wantErr     error
	}{
		{
			name: "two keys from one credential", settings: dd,
			cred:        cred("api_key", secretValue, "app_key", "app-"+secretValue),
			header:      http.Header{"Dd-Api-Key": {"client"}, "Accept": {"*/*"}},
			wantHeader:  http.Header{"Dd-Api-Key": {secretValue}, "Dd-Application-Key": {"app-" + secretValue}, "Accept": {"*/*"}},
			wantHeaders: []string{"Dd-Api-Key", "Dd-Application-Key"},
		},
		{
			name:        "constant header beside a credential header",
			settings:    "headers:\n  x-api-key: '{{.token}}'\n  anthropic-version: '2023-06-01'\n",
			cred:        cred("token", secretValue),
			header:      http.Header{"Anthropic-Version": {"1999-01-01"}, "X-Api-Key": {"placeholder"}},
			wantHeader:  http.Header{"Anthropic-Version": {"2023-06-01"}, "X-Api-Key": {secretValue}},
			wantHeaders: []string{"Anthropic-Version", "X-Api-Key"},
		},
		{
			name:        "PagerDuty-style prefix and Authorization",
			settings:    "headers:\n  Authorization: 'Token token={{.token}}'\n",
			cred:        cred("token", secretValue),
			header:      http.Header{"Authorization": {"Token token=placeholder"}},
			wantHeader:  http.Header{"Authorization": {"Token token=" + secretValue}},
			wantHeaders: []string{"Authorization"},
		},
		{
			name: "second field missing: nothing set", settings: dd,
			cred:    cred("api_key", secretValue),
			header:  http.Header{"Dd-Api-Key": {"client"}},
			wantErr: ErrMissingField,
		},
		{
			name: "line break in the second value: nothing set", settings: dd,
			cred:    cred("api_key", secretValue, "app_key", secretValue+"\r\nX-Evil: 1"),
			header:  http.Header{"Dd-Api-Key": {"client"}},
			wantErr: ErrInvalidValue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := loadInjector(t, "headers", tt.settings)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.wantHeaders, HeadersOf(inj)); tt.wantErr == nil && diff != "" {
				t.Errorf("Headers() (-want +got):\n%s", diff)
			}
			r := httptest.NewRequest(http.MethodGet, "https://api.test/v1", nil)
			for k, vs := range tt.header {
				r.Header[k] = append([]string(nil), vs...)
			}
			before := r.Header.Clone()
			err = inj.Inject(r, tt.cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Inject error = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("error contains the secret: %v", err)
				}
				if diff := cmp.Diff(before, r.Header); diff != "" {
					t.Errorf("failed Inject changed headers (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if diff := cmp.Diff(tt.wantHeader, r.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// Apply removes every client copy of every declared name, including the
// constant ones, before the injector sets its own.
func TestHeadersApplyRemovesClientCopies(t *testing.T) {
	inj, err := loadInjector(t, "headers", "headers:\n  X-Api-Key: '{{.token}}'\n  Stripe-Version: '2024-06-20'\n")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "https://api.test/", nil)
	r.Header.Add("x-api-key", "client copy")
	r.Header["Stripe-Version"] = []string{"a", "b"}
	if err := Apply(inj, r, cred("token", secretValue)); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"X-Api-Key": {secretValue}, "Stripe-Version": {"2024-06-20"}}
	if diff := cmp.Diff(want, r.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestHeadersSettings(t *testing.T) {
	tests := []struct{ settings, wantErr string }{
		{"", "at least one header is required"},
		{"headers: {}", "at least one header is required"},
		{"headers: {Host: '{{.token}}'}", "Host is reserved"},
		{"headers: {x-credgate-who: '{{.token}}'}", "reserved"},
		{"headers: {'bad name': '{{.token}}'}", "not a valid header name"},
		{"headers: {X-A: '{{.token'}", "not a valid template"},
		{"headers: {X-A: '{{.token}}', x-a: '{{.other}}'}", "are the same header"},
		{"headers: {X-Version: '2024'}", "no header uses a credential field"},
		{"headers: {X-Version: \"a\\nb\", X-Key: '{{.token}}'}", "line break"},
		{"header: {X-A: b}", `unknown field "header"`},
		{"headers: {X-Key: '{{.token}}', X-Version: '2024'}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.settings, func(t *testing.T) {
			_, err := loadInjector(t, "headers", tt.settings)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (got == "") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Load error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestWithoutParams(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"a=1&signature=x&b=2":             "a=1&b=2",
		"sig%6Eature=x&timestamp=1&c=%20": "c=%20",
		"signature":                       "",
	} {
		if got := WithoutParams(in, "signature", "timestamp"); got != want {
			t.Errorf("WithoutParams(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWithoutParamsLookAlikes: every spelling of a parameter's name that
// some server reads as that name is removed with it, whatever the
// injected name's own spelling; names that only resemble it stay.
func TestWithoutParamsLookAlikes(t *testing.T) {
	// Spellings of api_key as servers read them.
	same := []string{
		"api_key", "API_KEY", "Api_Key", "aPi_kEy", // ASP.NET and others: no case
		"api%5Fkey", "%61pi_key", "api%5fKEY", // percent-encoded
		"api_key[]", "api_key[0]", "api_key[x]", "api_key%5B%5D", "api_key[", // PHP, Rails arrays
		"api.key", "api+key", "api%20key", "api%2Ekey", " api_key", "+api_key", // PHP: ' ' and '.' are '_'
		"api_key%00", "api_key%00junk", // C strings
		// Java's equalsIgnoreCase, Python's upper() and others comparing
		// upper-cased names: dotless ı (U+0131) upper-cases to I, the
		// Kelvin sign (U+212A) lower-cases to k.
		"ap%C4%B1_key", "AP%C4%B1_KEY", "api_%E2%84%AAey",
	}
	// Names that only resemble it.
	other := []string{"api_keys", "xapi_key", "apikey", "api-key", "api__key", "key", "api", "api_ke", "api_key2", "%ZZapi_key", "api_%6Bey_x"}
	// The long s (U+017F) upper-cases to S: a server comparing
	// upper-cased names reads it as "signature".
	if got := WithoutParams("a=1&%C5%BFignature=evil&b=2", "signature"); got != "a=1&b=2" {
		t.Errorf("WithoutParams(long s) = %q, want a=1&b=2", got)
	}
	for _, injected := range []string{"api_key", "API_KEY", "api.key"} {
		for _, n := range same {
			for _, q := range []string{n + "=evil", "a=1&" + n + "=evil&b=2", n, "a=1;" + n + "=evil", n + "=evil;b=2&c=3"} {
				got := WithoutParams(q, injected)
				if strings.Contains(got, "evil") || (q == n && got != "") {
					t.Errorf("WithoutParams(%q, %q) = %q: a server reads %q as %q", q, injected, got, n, injected)
				}
				if strings.Contains(q, "c=3") && got != "c=3" || strings.HasPrefix(q, "a=1&") && got != "a=1&b=2" {
					t.Errorf("WithoutParams(%q, %q) = %q: removed more than the look-alike's part", q, injected, got)
				}
			}
		}
		for _, n := range other {
			q := "a=1&" + n + "=mine&b=2"
			if got := WithoutParams(q, injected); got != q {
				t.Errorf("WithoutParams(%q, %q) = %q: %q is another parameter", q, injected, got, n)
			}
		}
	}
}
