package injectortest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Case is one row of a header-injection table for Run.
type Case struct {
	// Name names the subtest.
	Name string
	// Settings are the injector's YAML settings; "" means none.
	Settings string
	// Method and URL make the request; default POST and the URL Run was
	// given.
	Method, URL string
	// Workload is the caller (injectors.ApplyFor); zero for none.
	Workload identity.Workload
	// Cred is the credential applied.
	Cred *providers.Credential
	// Client are the headers the client sent.
	Client http.Header
	// Want are all the request's headers after a successful injection.
	// After a failed one they are checked too when Want is not nil.
	Want http.Header
	// WantErr, when set, is the error the injection must fail with
	// (errors.Is).
	WantErr error
}

// Run builds the injector registered as name with each case's settings
// (through Load), applies the case's credential to a request to url (or
// the case's own URL) with injectors.ApplyFor, and compares the headers
// with cmp.Diff. A failure must match WantErr, its error text must hold
// no value of the credential, and it must have set no header (what is
// left is what the client sent: injection cannot fail halfway).
func Run(t *testing.T, name, url string, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			inj, err := Load(t, name, c.Settings)
			if err != nil {
				t.Fatal(err)
			}
			method, target := c.Method, c.URL
			if method == "" {
				method = http.MethodPost
			}
			if target == "" {
				target = url
			}
			r := httptest.NewRequest(method, target, nil)
			for k, v := range c.Client {
				r.Header[k] = slices.Clone(v)
			}
			err = injectors.ApplyFor(inj, r, c.Cred, c.Workload)
			if c.WantErr != nil {
				if !errors.Is(err, c.WantErr) {
					t.Fatalf("error %v, want %v", err, c.WantErr)
				}
				for f, v := range c.Cred.Fields {
					if s := v.Reveal(); s != "" && strings.Contains(err.Error(), s) {
						t.Errorf("error %q shows field %s", err, f)
					}
				}
				for h, vals := range r.Header {
					if !slices.Equal(vals, c.Client[h]) {
						t.Errorf("a failed injection set %s: %q (the client sent %q)", h, vals, c.Client[h])
					}
				}
				if c.Want == nil {
					return
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.Want, r.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// CheckSettings loads the injector registered as name with each key of
// cases as its YAML settings. The value is "" when the settings must be
// accepted, else a part of the error they must be refused with.
func CheckSettings(t *testing.T, name string, cases map[string]string) {
	t.Helper()
	for settings, want := range cases {
		_, err := Load(t, name, settings)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%q: error %q, want %q", settings, got, want)
		}
	}
}
