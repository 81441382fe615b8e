package twilio

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/providers"
)

const (
	sid    = "AC0123456789abcdef0123456789abcdef"
	keySID = "SKfedcba9876543210fedcba9876543210"
	secret = "k3ys3cr3tk3ys3cr3tk3ys3cr3tk3ys3"
	token  = "4uth70k3n4uth70k3n4uth70k3n4uth7"
)

var cred = injectortest.Cred

func basic(u, p string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
}

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings, path string
		cred                 *providers.Credential
		wantPath, wantAuth   string
		wantErr              error
	}{
		{name: "API key; the placeholder segment gets the SID", path: "/2010-04-01/Accounts/-/Messages.json",
			cred:     cred("account_sid", sid, "api_key_sid", keySID, "api_key_secret", secret),
			wantPath: "/2010-04-01/Accounts/" + sid + "/Messages.json", wantAuth: basic(keySID, secret)},
		{name: "auth token; the account resource", path: "/2010-04-01/Accounts/-.json",
			cred:     cred("account_sid", sid, "auth_token", token),
			wantPath: "/2010-04-01/Accounts/" + sid + ".json", wantAuth: basic(sid, token)},
		{name: "SID from the rule", settings: "account_sid: " + sid, path: "/2010-04-01/Accounts/-/Calls/CA1.json",
			cred:     cred("api_key_sid", keySID, "api_key_secret", secret),
			wantPath: "/2010-04-01/Accounts/" + sid + "/Calls/CA1.json", wantAuth: basic(keySID, secret)},
		{name: "a subaccount named by the client passes as sent", path: "/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Messages.json",
			cred:     cred("account_sid", sid, "api_key_sid", keySID, "api_key_secret", secret),
			wantPath: "/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Messages.json", wantAuth: basic(keySID, secret)},
		{name: "a placeholder elsewhere is not touched", path: "/2010-04-01/Accounts/-x/Messages/-",
			cred:     cred("account_sid", sid, "auth_token", token),
			wantPath: "/2010-04-01/Accounts/-x/Messages/-", wantAuth: basic(sid, token)},
		{name: "escaped rest kept escaped", path: "/2010-04-01/Accounts/-/Messages/a%20b.json",
			cred:     cred("account_sid", sid, "auth_token", token),
			wantPath: "/2010-04-01/Accounts/" + sid + "/Messages/a%20b.json", wantAuth: basic(sid, token)},
		{name: "SID not canonical", path: "/2010-04-01/Accounts/-/Messages.json",
			cred: cred("account_sid", "AC../../x", "auth_token", token), wantErr: injectors.ErrInvalidValue},
		{name: "SID upper-case hex", path: "/2010-04-01/Accounts/-/Messages.json",
			cred: cred("account_sid", "AC0123456789ABCDEF0123456789ABCDEF", "auth_token", token), wantErr: injectors.ErrInvalidValue},
		{name: "no SID", path: "/2010-04-01/Accounts/-/Messages.json", cred: cred("auth_token", token), wantErr: injectors.ErrMissingField},
		{name: "API key SID malformed", path: "/2010-04-01/Accounts/-/Messages.json",
			cred: cred("account_sid", sid, "api_key_sid", "AC0123", "api_key_secret", secret), wantErr: injectors.ErrInvalidValue},
		{name: "API key without secret", path: "/2010-04-01/Accounts/-/Messages.json",
			cred: cred("account_sid", sid, "api_key_sid", keySID), wantErr: injectors.ErrMissingField},
		{name: "neither secret", path: "/2010-04-01/Accounts/-/Messages.json",
			cred: cred("account_sid", sid), wantErr: injectors.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := injectortest.Load(t, Name, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "https://api.twilio.com"+tt.path, nil)
			r.Header.Set("Authorization", basic("-", "placeholder"))
			err = injectors.Apply(inj, r, tt.cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				for _, s := range []string{secret, token} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error %q shows a secret", err)
					}
				}
				if r.URL.EscapedPath() != tt.path || r.Header.Get("Authorization") != "" {
					t.Errorf("a failed injection changed the request: path %q, Authorization %q", r.URL.EscapedPath(), r.Header.Get("Authorization"))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.URL.EscapedPath(); got != tt.wantPath {
				t.Errorf("path %q, want %q", got, tt.wantPath)
			}
			if got := r.Header.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("Authorization %q, want %q", got, tt.wantAuth)
			}
		})
	}
}

// TestOnlyTheSegmentChanges is invariant 11's refinement for this
// injector: for every canonical path, the rewritten path is canonical
// too, has the same segments except the account segment, and that
// segment changes only when it was the placeholder.
func TestOnlyTheSegmentChanges(t *testing.T) {
	inj, err := injectortest.Load(t, Name, "")
	if err != nil {
		t.Fatal(err)
	}
	c := cred("account_sid", sid, "auth_token", token)
	paths := []string{"/", "/2010-04-01", "/2010-04-01/Accounts", "/2010-04-01/Accounts/", "/2010-04-01/Accounts/-",
		"/2010-04-01/Accounts/-/", "/2010-04-01/Accounts/-.json", "/2010-04-01/Accounts/-.xml", "/2010-04-01/Accounts/--/x",
		"/2010-04-01/Accounts/-/Messages.json", "/2010-04-01/Accounts/-/Messages/-/Media.json", "/2010-04-01/accounts/-/x",
		"/2010-04-02/Accounts/-/x", "/x/2010-04-01/Accounts/-/x", "/2010-04-01/Accounts/-/a%20b", "/2010-04-01/Accounts/-/%E2%82%AC"}
	for _, p := range paths {
		cp, err := canonical.ParsePath(p)
		if err != nil {
			continue // refused before any injector runs
		}
		r := httptest.NewRequest("GET", "https://api.twilio.com/", nil)
		r.URL.Path, r.URL.RawPath = cp.Decoded, cp.Raw
		if err := injectors.Apply(inj, r, c); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		got := r.URL.EscapedPath()
		if _, err := canonical.ParsePath(got); err != nil {
			t.Errorf("%q became %q, which is not canonical: %v", p, got, err)
		}
		in, out := strings.Split(cp.Raw, "/"), strings.Split(got, "/")
		if len(in) != len(out) {
			t.Errorf("%q became %q: segments changed", p, got)
			continue
		}
		for i := range in {
			if in[i] == out[i] {
				continue
			}
			placeholder := i == 3 && strings.HasPrefix(cp.Raw, AccountsPrefix) && (in[i] == "-" || in[i] == "-.json")
			if !placeholder || out[i] != strings.Replace(in[i], "-", sid, 1) {
				t.Errorf("%q became %q: segment %d %q changed to %q", p, got, i, in[i], out[i])
			}
		}
		if d, _ := url.PathUnescape(got); d != r.URL.Path {
			t.Errorf("%q: decoded %q and raw %q disagree", p, r.URL.Path, got)
		}
	}
}

func TestSettings(t *testing.T) {
	injectortest.CheckSettings(t, Name, map[string]string{
		"":                    "",
		"account_sid: " + sid: "",
		"account_sid: AC123":  "not an Account SID",
		"account_sid: '-'":    "not an Account SID",
		"account: " + sid:     `unknown field "account"`,
		"placeholder: XX":     `unknown field "placeholder"`,
	})
}

func BenchmarkInject(b *testing.B) {
	inj, err := injectortest.Load(b, Name, "")
	if err != nil {
		b.Fatal(err)
	}
	c := cred("account_sid", sid, "api_key_sid", keySID, "api_key_secret", secret)
	r := httptest.NewRequest("POST", "https://api.twilio.com/2010-04-01/Accounts/-/Messages.json", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.URL.Path, r.URL.RawPath = "/2010-04-01/Accounts/-/Messages.json", ""
		if err := injectors.Apply(inj, r, c); err != nil {
			b.Fatal(err)
		}
	}
}
