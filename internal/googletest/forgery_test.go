package googletest_test

import (
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
	key := fakekit.RSAKey(t)
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
	sign := func(c, hdr map[string]any) string { return fakekit.SignRS256(t, key, c, hdr) }
	valid := map[string]any{"iss": email, "aud": s.TokenURL, "scope": "https://www.googleapis.com/auth/cloud-platform",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if code := grant(sign(valid, kid)); code != http.StatusOK {
		t.Fatalf("a valid assertion got %d", code)
	}
	forged, err := fakekit.RefusedTokens(valid, key, kid, []fakekit.ClaimChange{
		{Name: "iss of no account", Claim: "iss", Value: "other@proj.iam.gserviceaccount.com"},
		{Name: "aud another token URL", Claim: "aud", Value: "https://oauth2.googleapis.com/token"},
		{Name: "no aud", Claim: "aud", Value: nil},
		{Name: "no scope", Claim: "scope", Value: nil},
		{Name: "iat in the future", Claim: "iat", Value: now.Add(5 * time.Minute).Unix()},
		{Name: "expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "lifetime over an hour", Claim: "exp", Value: now.Add(61 * time.Minute).Unix()},
		{Name: "no iat", Claim: "iat", Value: nil},
		{Name: "no exp", Claim: "exp", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged,
		fakekit.Forgery{Name: "kid of no key of the account", Token: sign(valid, map[string]any{"kid": "k2"})},
		fakekit.Forgery{Name: "no kid", Token: sign(valid, nil)})
	fakekit.ExpectRefused(t, forged, grant, http.StatusBadRequest, http.StatusUnauthorized)
}
