package fakekit_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/credgate/credgate/internal/fakekit"
)

func TestDecodeJWT(t *testing.T) {
	// {"alg":"RS256","kid":"k1"} . {"iss":"app","exp":5} . signature
	const tok = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJhcHAiLCJleHAiOjV9.c2ln"
	var hdr struct{ Kid string }
	var claims map[string]any
	if err := fakekit.DecodeJWT(tok, &hdr, &claims); err != nil {
		t.Fatalf("DecodeJWT: %v", err)
	}
	if hdr.Kid != "k1" || claims["iss"] != "app" || claims["exp"] != float64(5) {
		t.Errorf("header %+v, claims %v", hdr, claims)
	}
	if err := fakekit.DecodeJWT(tok, nil, nil); err != nil {
		t.Errorf("DecodeJWT(nil, nil) = %v", err)
	}
	for _, bad := range []string{"", "a.b", "a.b.c.d", "!!.eyJ9.x", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.x"} {
		if err := fakekit.DecodeJWT(bad, &hdr, &claims); !errors.Is(err, fakekit.ErrNotJWT) {
			t.Errorf("DecodeJWT(%q) = %v, want ErrNotJWT", bad, err)
		}
	}
}

func TestStartTLS(t *testing.T) {
	srv := fakekit.StartTLS(http.NotFoundHandler(), nil)
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || len(fakekit.CertPEM(srv)) == 0 {
		t.Errorf("status %d, want 404 over TLS and a PEM certificate", resp.StatusCode)
	}
}

// TestStartTLSRefusesRepeatedCredentialFields: every fake started by
// StartTLS answers 400 to a request carrying a credential field twice
// (the client's and an injected one side by side), whichever field it
// is, and lets one copy of each through.
func TestStartTLSRefusesRepeatedCredentialFields(t *testing.T) {
	srv := fakekit.StartTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	t.Cleanup(srv.Close)
	send := func(h http.Header) int {
		t.Helper()
		r, err := http.NewRequest("GET", srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header = h
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	once := http.Header{}
	for _, name := range fakekit.CredentialFields {
		once.Set(name, "v1")
	}
	if code := send(once); code != http.StatusOK {
		t.Fatalf("one of each credential field: %d, want 200", code)
	}
	for _, name := range fakekit.CredentialFields {
		h := http.Header{}
		h.Add(name, "client-value")
		h.Add(name, "injected-value")
		if code := send(h); code != http.StatusBadRequest {
			t.Errorf("%s twice: %d, want 400", name, code)
		}
	}
}
