package githubtest_test

import (
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/githubtest"
)

// TestFakeRefusesForgeries: the fake verifies the app JWT as GitHub does.
// A JWT signed as GitHub documents it (RS256, iss the app ID or client
// ID, iat 60 s back, exp 9 min on) is accepted; forged signatures and
// wrong claims (another app's iss, no iat, iat in the future, expired,
// exp more than 10 min ahead) get 401.
func TestFakeRefusesForgeries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := githubtest.New(githubtest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	other := fakekit.RSAKey(t)
	s.AddApp(githubtest.App{ID: 4242, ClientID: "Iv1.0123456789abcdef", PublicKey: &key.PublicKey})
	s.AddApp(githubtest.App{ID: 777, PublicKey: &other.PublicKey})
	s.AddInstallation(githubtest.Installation{ID: 9, AppID: 4242, Account: "acme", Org: true, Repositories: []string{"api"}})
	get := func(tok string) int {
		t.Helper()
		r, err := http.NewRequest("GET", s.URL+"/orgs/acme/installation", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(c map[string]any) string { return fakekit.SignRS256(t, key, c, nil) }
	valid := map[string]any{"iss": "4242", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}
	for _, iss := range []any{"4242", 4242, "Iv1.0123456789abcdef"} {
		c := maps.Clone(valid)
		c["iss"] = iss
		if code := get(sign(c)); code != http.StatusOK {
			t.Fatalf("a valid app JWT (iss %v) got %d", iss, code)
		}
	}
	forged, err := fakekit.RefusedTokens(valid, key, nil, []fakekit.ClaimChange{
		{Name: "iss of another app", Claim: "iss", Value: "777"},
		{Name: "iss unknown", Claim: "iss", Value: "1"},
		{Name: "no iss", Claim: "iss", Value: nil},
		{Name: "no iat", Claim: "iat", Value: nil},
		{Name: "iat in the future", Claim: "iat", Value: now.Add(2 * time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
		{Name: "expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "exp more than 10 min ahead", Claim: "exp", Value: now.Add(12 * time.Minute).Unix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	fakekit.ExpectRefused(t, forged, get, http.StatusUnauthorized)
}
