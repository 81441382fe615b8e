package injectors

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// TestApplyReplacesClientHeaders: Apply removes every client copy of the
// headers an injector declares before injecting, so no client value
// survives beside the credential.
func TestApplyReplacesClientHeaders(t *testing.T) {
	inj := &Header{Name: "X-Api-Key"}
	if err := inj.Provision(); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/", nil)
	r.Header["X-Api-Key"] = []string{"client-1", "client-2"}
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	if err := Apply(inj, r, cred); err != nil {
		t.Fatal(err)
	}
	if got := r.Header["X-Api-Key"]; len(got) != 1 || got[0] != "real" {
		t.Errorf("X-Api-Key = %q, want only the injected value", got)
	}
	if !Replayable(inj) {
		t.Error("a header injector is replayable")
	}
	if Replayable(&TLSClient{}) {
		t.Error("a client-certificate injector is not replayable")
	}
	if c, err := ClientCertificateOf(inj, cred); c != nil || err != nil {
		t.Errorf("ClientCertificateOf(header) = %v, %v", c, err)
	}
}

// TestApplyReplacesCGISpellings: for an injected name with '_', the
// client's fields that CGI-style servers read as the same name (any
// case, '-' for '_') are removed too, so no client value reaches such a
// server beside the credential as HTTP_API_KEY.
func TestApplyReplacesCGISpellings(t *testing.T) {
	inj := &Header{Name: "api_key"}
	if err := inj.Provision(); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/", nil)
	for _, k := range []string{"Api-Key", "API-KEY", "api-key", "Api_key", "Api-Key-2", "Apikey"} {
		r.Header[k] = []string{"client"}
	}
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	if err := Apply(inj, r, cred); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Api_key": {"real"}, "Api-Key-2": {"client"}, "Apikey": {"client"}}
	if len(r.Header) != len(want) {
		t.Fatalf("headers %v, want %v", r.Header, want)
	}
	for k, v := range want {
		if got := r.Header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// mutator is an injector that changes the request with f: a plugin's bug,
// or one that builds the URL from a credential field (an instance URL).
type mutator func(*http.Request)

func (m mutator) Inject(r *http.Request, _ *providers.Credential) error { m(r); return nil }

// TestApplyKeepsTheDestination checks the class "an injector cannot send
// the credential elsewhere or do something else with it than the policy
// decided": whatever an injector changes among the method, the URL's
// scheme, host and userinfo and the Host field, ApplyFor fails with
// ErrDestinationChanged (the gateway forwards nothing); what injectors
// legitimately change (headers, the query, the path) passes.
func TestApplyKeepsTheDestination(t *testing.T) {
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	tests := []struct {
		name    string
		f       func(*http.Request)
		changed bool
	}{
		{"url-host", func(r *http.Request) { r.URL.Host = "evil.example" }, true},
		{"url-port", func(r *http.Request) { r.URL.Host = "api.example:8443" }, true},
		{"host-field", func(r *http.Request) { r.Host = "evil.example" }, true},
		{"scheme", func(r *http.Request) { r.URL.Scheme = "http" }, true},
		{"method", func(r *http.Request) { r.Method = http.MethodDelete }, true},
		{"userinfo", func(r *http.Request) { r.URL.User = url.UserPassword("u", "p") }, true},
		{"opaque", func(r *http.Request) { r.URL.Opaque = "//evil.example/x" }, true},
		{"whole-url", func(r *http.Request) { r.URL, _ = url.Parse("https://evil.example/v1") }, true},
		{"same-url-rebuilt", func(r *http.Request) { r.URL, _ = url.Parse(r.URL.String()) }, false},
		{"header", func(r *http.Request) { r.Header.Set("Authorization", "Bearer real") }, false},
		{"query", func(r *http.Request) { r.URL.RawQuery = "key=real" }, false},
		{"path", func(r *http.Request) { r.URL.Path = "/v1/real/x" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
			err := Apply(mutator(tt.f), r, cred)
			if got := errors.Is(err, ErrDestinationChanged); got != tt.changed {
				t.Errorf("Apply = %v; ErrDestinationChanged %v, want %v", err, got, tt.changed)
			}
			if err != nil && strings.Contains(err.Error(), "real") {
				t.Errorf("the error names the credential: %v", err)
			}
		})
	}
}
