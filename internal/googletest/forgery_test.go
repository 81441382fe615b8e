package googletest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/googletest"
)

// TestFakeRefusesForgeries: the fake verifies the service-account JWT
// grant as Google does. An assertion signed as Google documents it
// (RS256 by the key its kid names, iss the account, aud the token URL,
// iat now, exp at most an hour on, a scope) gets a token; forged
// signatures and wrong claims or kid are refused (400 or 401).
func TestFakeRefusesForgeries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := googletest.New(googletest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const email = "svc@proj.iam.gserviceaccount.com"
	s.AddAccount(googletest.Account{Email: email, KeyID: "k1", Key: key})
	grant := func(assertion string) int {
		t.Helper()
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
		resp, err := s.Client().Post(s.TokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	kid := map[string]any{"kid": "k1"}
	sign := func(c map[string]any, hdr map[string]any) string {
		tok, err := fakekit.SignJWT("RS256", key, c, hdr)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := map[string]any{"iss": email, "aud": s.TokenURL, "scope": "https://www.googleapis.com/auth/cloud-platform",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if code := grant(sign(valid, kid)); code != http.StatusOK {
		t.Fatalf("a valid assertion got %d", code)
	}
	forged, err := fakekit.Forgeries(valid, key, kid)
	if err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) map[string]any {
		c := maps.Clone(valid)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	forged = append(forged,
		fakekit.Forgery{Name: "kid of no key of the account", Token: sign(valid, map[string]any{"kid": "k2"})},
		fakekit.Forgery{Name: "no kid", Token: sign(valid, nil)})
	for _, c := range []struct {
		name   string
		claims map[string]any
	}{
		{"iss of no account", with("iss", "other@proj.iam.gserviceaccount.com")},
		{"aud another token URL", with("aud", "https://oauth2.googleapis.com/token")},
		{"no aud", with("aud", nil)},
		{"no scope", with("scope", nil)},
		{"iat in the future", with("iat", now.Add(5*time.Minute).Unix())},
		{"expired", with("exp", now.Add(-2*time.Minute).Unix())},
		{"lifetime over an hour", with("exp", now.Add(61*time.Minute).Unix())},
		{"no iat", with("iat", nil)},
		{"no exp", with("exp", nil)},
	} {
		forged = append(forged, fakekit.Forgery{Name: c.name, Token: sign(c.claims, kid)})
	}
	for _, f := range forged {
		if code := grant(f.Token); code != http.StatusBadRequest && code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 400 or 401", f.Name, code)
		}
	}
}
