package injectors

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/providers"
)

const secretValue = "s3cr3t-value"

func cred(kv ...string) *providers.Credential {
	c := &providers.Credential{Fields: map[string]providers.Secret{}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Fields[kv[i]] = providers.NewSecret(kv[i+1])
	}
	return c
}

func loadInjector(t *testing.T, name, settings string) (Injector, error) {
	t.Helper()
	var n *yaml.Node
	if settings != "" {
		n = yamlNodeFor(t, settings)
	}
	return Load(context.Background(), name, n)
}

func yamlNodeFor(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestBuiltinsRegistered(t *testing.T) {
	got := Names()
	for _, want := range []string{"basic", "bearer", "header", "query"} {
		if _, ok := Lookup(want); !ok {
			t.Errorf("injector %q not registered (have %v)", want, got)
		}
	}
}

func TestInject(t *testing.T) {
	tests := []struct {
		name     string
		as       string
		settings string
		cred     *providers.Credential
		url      string
		header   http.Header // the client's headers
		// want
		wantHeader  http.Header
		wantQuery   string
		wantHeaders []string // HeaderNames
		wantErr     error    // errors.Is; the request must be untouched
	}{
		{
			name: "bearer default field replaces client Authorization", as: "bearer",
			cred: cred("token", secretValue), url: "https://api.test/v1",
			header:      http.Header{"Authorization": {"Bearer client-chosen", "Basic second"}, "Accept": {"*/*"}},
			wantHeader:  http.Header{"Authorization": {"Bearer " + secretValue}, "Accept": {"*/*"}},
			wantHeaders: []string{"Authorization"},
		},
		{
			name: "bearer custom field", as: "bearer", settings: "field: access_token",
			cred: cred("access_token", secretValue), url: "https://api.test/",
			wantHeader:  http.Header{"Authorization": {"Bearer " + secretValue}},
			wantHeaders: []string{"Authorization"},
		},
		{
			name: "bearer missing field", as: "bearer", settings: "field: access_token",
			cred: cred("token", secretValue), url: "https://api.test/",
			header:  http.Header{"Authorization": {"Bearer client"}},
			wantErr: ErrMissingField,
		},
		{
			name: "bearer rejects CRLF", as: "bearer",
			cred: cred("token", secretValue+"\r\nX-Evil: 1"), url: "https://api.test/",
			wantErr: ErrInvalidValue,
		},
		{
			name: "basic", as: "basic",
			cred: cred("username", "user", "password", secretValue), url: "https://api.test/",
			header:      http.Header{"Authorization": {"Basic Y2xpZW50OmNsaWVudA=="}},
			wantHeader:  http.Header{"Authorization": {"Basic dXNlcjpzM2NyM3QtdmFsdWU="}},
			wantHeaders: []string{"Authorization"},
		},
		{
			name: "basic custom fields", as: "basic", settings: "username_field: id\npassword_field: token",
			cred: cred("id", "user", "token", secretValue), url: "https://api.test/",
			wantHeader:  http.Header{"Authorization": {"Basic dXNlcjpzM2NyM3QtdmFsdWU="}},
			wantHeaders: []string{"Authorization"},
		},
		{
			name: "basic missing password", as: "basic",
			cred: cred("username", "user"), url: "https://api.test/",
			header:  http.Header{"Authorization": {"Basic client"}},
			wantErr: ErrMissingField,
		},
		{
			name: "basic colon in username", as: "basic",
			cred: cred("username", "us:er", "password", secretValue), url: "https://api.test/",
			wantErr: ErrInvalidValue,
		},
		{
			name: "header template", as: "header", settings: "name: x-api-key\nvalue: 'token {{.token}}'",
			cred: cred("token", secretValue), url: "https://api.test/",
			header:      http.Header{"X-Api-Key": {"client", "client2"}},
			wantHeader:  http.Header{"X-Api-Key": {"token " + secretValue}},
			wantHeaders: []string{"X-Api-Key"},
		},
		{
			name: "header default value", as: "header", settings: "name: PRIVATE-TOKEN",
			cred: cred("token", secretValue), url: "https://api.test/",
			wantHeader:  http.Header{"Private-Token": {secretValue}},
			wantHeaders: []string{"Private-Token"},
		},
		{
			name: "header two fields", as: "header", settings: "name: X-Auth\nvalue: '{{.username}}/{{.password}}'",
			cred: cred("username", "u", "password", secretValue), url: "https://api.test/",
			wantHeader:  http.Header{"X-Auth": {"u/" + secretValue}},
			wantHeaders: []string{"X-Auth"},
		},
		{
			name: "header missing field", as: "header", settings: "name: X-Auth\nvalue: '{{.username}}/{{.password}}'",
			cred: cred("username", "u"), url: "https://api.test/",
			header:  http.Header{"X-Auth": {"client"}},
			wantErr: ErrMissingField,
		},
		{
			name: "header rejects LF", as: "header", settings: "name: X-Api-Key",
			cred: cred("token", secretValue+"\nX-Evil: 1"), url: "https://api.test/",
			header:  http.Header{"X-Api-Key": {"client"}},
			wantErr: ErrInvalidValue,
		},
		{
			name: "query replaces client value", as: "query", settings: "param: api_key",
			cred: cred("token", secretValue), url: "https://api.test/v1?b=2&api_key=client&a=1&api%5Fkey=sneaky&api_key",
			wantQuery: "b=2&a=1&api_key=" + secretValue,
		},
		{
			name: "query escapes value", as: "query", settings: "param: key\nfield: k",
			cred: cred("k", "a&b=c d"), url: "https://api.test/v1",
			wantQuery: "key=a%26b%3Dc+d",
		},
		{
			name: "query missing field", as: "query", settings: "param: api_key",
			cred: cred("other", "x"), url: "https://api.test/v1?api_key=client",
			wantErr: ErrMissingField,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := loadInjector(t, tt.as, tt.settings)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for k, vs := range tt.header {
				r.Header[k] = append([]string(nil), vs...)
			}
			before := r.Clone(r.Context())
			err = inj.Inject(r, tt.cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Inject error = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("error contains the secret: %v", err)
				}
				if diff := cmp.Diff(before.Header, r.Header); diff != "" {
					t.Errorf("failed Inject changed headers (-before +after):\n%s", diff)
				}
				if r.URL.String() != before.URL.String() {
					t.Errorf("failed Inject changed the URL to %s", r.URL)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if tt.wantHeader != nil {
				if diff := cmp.Diff(tt.wantHeader, r.Header); diff != "" {
					t.Errorf("headers (-want +got):\n%s", diff)
				}
			}
			if tt.wantQuery != "" {
				if diff := cmp.Diff(tt.wantQuery, r.URL.RawQuery); diff != "" {
					t.Errorf("query (-want +got):\n%s", diff)
				}
			}
			hn, ok := inj.(HeaderNames)
			if !ok {
				t.Fatalf("%T does not implement HeaderNames", inj)
			}
			if diff := cmp.Diff(tt.wantHeaders, hn.Headers()); diff != "" {
				t.Errorf("Headers() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInjectorSettings(t *testing.T) {
	tests := []struct {
		as, settings string
		wantErr      string
	}{
		{"header", "value: '{{.token}}'", "name is required"},
		{"header", "name: 'bad name'", "not a valid header name"},
		{"header", "name: Host", "reserved"},
		{"header", "name: proxy-authorization", "reserved"},
		{"header", "name: X-Credgate-Reason", "reserved"},
		{"header", "name: X\nvalue: '{{.token'", "not a valid template"},
		{"header", "name: X\nvalu: y", `line 2: unknown field "valu"; known fields are name, value`},
		{"bearer", "feild: token", `line 1: unknown field "feild"; known fields are field`},
		{"basic", "username: u", `line 1: unknown field "username"; known fields are username_field, password_field`},
		{"query", "field: token", "param is required"},
		{"query", "param: k", ""},
		{"bearer", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.as+" "+tt.settings, func(t *testing.T) {
			_, err := loadInjector(t, tt.as, tt.settings)
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
