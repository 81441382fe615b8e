package oauth2test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// TestRefusesForgedAssertions: the server verifies a private_key_jwt
// client assertion (RFC 7523 §3: iss = sub = the client, aud the token
// endpoint, exp, jti) and a trusted issuer's assertion or subject token
// (signature, exp, sub) as RFC 7523 and RFC 8693 have it, and refuses
// forged signatures and wrong claims; a client assertion's jti is good
// once.
func TestRefusesForgedAssertions(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	s.AddKeyClient("app", &key.PublicKey)
	s.TrustIssuer("https://idp.example", &key.PublicKey)
	post := func(form url.Values) int {
		t.Helper()
		resp, err := http.PostForm(s.TokenURL(), form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	clientGrant := func(tok string) int {
		return post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
			"client_assertion_type": {assertionType}, "client_assertion": {tok}})
	}
	now := time.Now()
	// Forgeries that RFC 7518 leaves valid for a general server (RS512
	// with the right key) are not in the list.
	notRS512 := func(fs []fakekit.Forgery) []fakekit.Forgery {
		var out []fakekit.Forgery
		for _, f := range fs {
			if !strings.HasPrefix(f.Name, "RS512") {
				out = append(out, f)
			}
		}
		return out
	}
	client := map[string]any{"iss": "app", "sub": "app", "aud": s.TokenURL(), "jti": "j-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	forged, err := fakekit.RefusedTokens(client, key, nil, []fakekit.ClaimChange{
		{Name: "iss another client", Claim: "iss", Value: "other"},
		{Name: "sub another client", Claim: "sub", Value: "other"},
		{Name: "aud another endpoint", Claim: "aud", Value: s.URL + "/other"},
		{Name: "no aud", Claim: "aud", Value: nil},
		{Name: "expired", Claim: "exp", Value: now.Add(-time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
		{Name: "no jti", Claim: "jti", Value: nil},
		{Name: "iat in the future", Claim: "iat", Value: now.Add(10 * time.Minute).Unix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Before the valid assertion, so none is refused only as a replay.
	fakekit.ExpectRefused(t, notRS512(forged), clientGrant, http.StatusUnauthorized, http.StatusBadRequest)
	valid := fakekit.SignRS256(t, key, client, nil)
	if code := clientGrant(valid); code != http.StatusOK {
		t.Fatalf("a valid client assertion: %d", code)
	}
	if code := clientGrant(valid); code == http.StatusOK {
		t.Error("the same client assertion again (jti replay): accepted")
	}

	subject := map[string]any{"iss": "https://idp.example", "sub": "workload-1", "aud": s.TokenURL(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	exchange := func(tok string) int {
		return post(url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {tok},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}})
	}
	if code := exchange(fakekit.SignRS256(t, key, subject, nil)); code != http.StatusOK {
		t.Fatalf("a valid subject token: %d", code)
	}
	forged, err = fakekit.RefusedTokens(subject, key, nil, []fakekit.ClaimChange{
		{Name: "untrusted issuer", Claim: "iss", Value: "https://evil.example"},
		{Name: "no sub", Claim: "sub", Value: nil},
		{Name: "expired", Claim: "exp", Value: now.Add(-time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	fakekit.ExpectRefused(t, notRS512(forged), exchange, http.StatusUnauthorized, http.StatusBadRequest)
}
