package googletest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/googletest"
)

// TestFakeAPIRefusesWrongTokens: what a Google API refuses after the
// token endpoint. An access token works only while unexpired and with
// the API's scope; a self-signed JWT (iss = sub, signed by the account's
// key) only with aud https://HOST/ of the API called or the API's
// scope, iat/exp current and an hour at most, and its kid.
func TestFakeAPIRefusesWrongTokens(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := googletest.New(googletest.Options{Now: clock, APIAudienceHost: "storage.googleapis.com"})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	const email = "svc@proj.iam.gserviceaccount.com"
	s.AddAccount(googletest.Account{Email: email, KeyID: "k1", Key: key})
	kid := map[string]any{"kid": "k1"}
	token := func(scope string) string {
		t.Helper()
		a := fakekit.SignRS256(t, key, map[string]any{"iss": email, "aud": s.TokenURL, "scope": scope,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, kid)
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a}}
		resp, err := s.Client().Post(s.TokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("token for %s: %v", scope, err)
		}
		return out.AccessToken
	}
	call := func(tok string) int {
		t.Helper()
		r, err := http.NewRequest("GET", s.URL+"/storage/v1/b", nil)
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
	const cloud = "https://www.googleapis.com/auth/cloud-platform"
	good := token(cloud)
	readonly := token("https://www.googleapis.com/auth/devstorage.read_only")
	selfSigned := map[string]any{"iss": email, "sub": email, "aud": "https://storage.googleapis.com/",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if code := call(good); code != http.StatusOK {
		t.Fatalf("an access token with the API's scope: %d", code)
	}
	if code := call(fakekit.SignRS256(t, key, selfSigned, kid)); code != http.StatusOK {
		t.Fatalf("a self-signed JWT for the API: %d", code)
	}
	forged, err := fakekit.RefusedTokens(selfSigned, key, kid, []fakekit.ClaimChange{
		{Name: "self-signed for another API", Claim: "aud", Value: "https://bigquery.googleapis.com/"},
		{Name: "self-signed with no aud or scope", Claim: "aud", Value: nil},
		{Name: "self-signed sub another account", Claim: "sub", Value: "other@proj.iam.gserviceaccount.com"},
		{Name: "self-signed expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "self-signed lifetime over an hour", Claim: "exp", Value: now.Add(61 * time.Minute).Unix()},
		{Name: "self-signed iat in the future", Claim: "iat", Value: now.Add(5 * time.Minute).Unix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged,
		fakekit.Forgery{Name: "self-signed with another kid", Token: fakekit.SignRS256(t, key, selfSigned, map[string]any{"kid": "k2"})},
		fakekit.Forgery{Name: "an access token without the API's scope", Token: readonly},
		fakekit.Forgery{Name: "an unknown access token", Token: "ya29.unknown"},
	)
	fakekit.ExpectRefused(t, forged, call, http.StatusUnauthorized)
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if code := call(good); code != http.StatusUnauthorized {
		t.Errorf("an access token at its expiry: %d, want 401", code)
	}
}
