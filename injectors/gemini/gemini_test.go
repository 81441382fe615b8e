package gemini

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const key = "sk-proj-s3cr3t"

func load(t *testing.T, settings string) (injectors.Injector, error) {
	t.Helper()
	return injectortest.Load(t, "gemini", settings)
}

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	inj, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key=placeholder&alt=sse&%6Bey=x", nil)
	r.Header.Set("X-Goog-Api-Key", "placeholder")
	r.Header.Set("Authorization", "Bearer placeholder")
	if err := injectors.Apply(inj, r, cred("token", key)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(http.Header{"X-Goog-Api-Key": {key}}, r.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if r.URL.RawQuery != "alt=sse" {
		t.Errorf("query %q, want the client's key= removed", r.URL.RawQuery)
	}
	r = httptest.NewRequest("POST", "https://generativelanguage.googleapis.com/v1beta/models?key=k", nil)
	err = inj.Inject(r, cred("other", key))
	if !errors.Is(err, injectors.ErrMissingField) || r.URL.RawQuery != "key=k" {
		t.Errorf("missing field: %v, query %q; want ErrMissingField and the request untouched", err, r.URL.RawQuery)
	}
	if _, err := load(t, "field: 'a b'"); err == nil || !strings.Contains(err.Error(), "not a field name") {
		t.Errorf("bad field: %v", err)
	}
}
