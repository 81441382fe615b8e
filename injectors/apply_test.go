package injectors

import (
	"net/http"
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
