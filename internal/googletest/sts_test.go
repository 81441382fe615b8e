package googletest_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/googletest"
)

// TestFakeSTSRefusesForgedSubjectTokens: the STS exchanges a subject
// token of the pool's issuer, signed by the JWKS key its kid names with
// that key's algorithm, for one of the pool's audiences, current and
// with a sub; forged signatures (including PS256 by a key published for
// RS256), another issuer or audience, expired, no sub, and an unknown or
// missing kid are refused.
func TestFakeSTSRefusesForgedSubjectTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := googletest.New(googletest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	const provider = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s"
	const issuer = "https://oidc.example/cluster"
	s.AddPool(googletest.Pool{Provider: provider, Issuer: issuer,
		JWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "wk", Algorithm: "RS256", Use: "sig"}}}})
	exchange := func(tok string) int {
		t.Helper()
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "audience": {provider},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "scope": {"https://www.googleapis.com/auth/cloud-platform"},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "subject_token": {tok}}
		resp, err := s.Client().Post(s.STSURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	kid := map[string]any{"kid": "wk"}
	valid := map[string]any{"iss": issuer, "sub": "system:serviceaccount:egress:credgate", "aud": "https:" + provider,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if code := exchange(fakekit.SignRS256(t, key, valid, kid)); code != http.StatusOK {
		t.Fatalf("a valid subject token: %d", code)
	}
	forged, err := fakekit.RefusedTokens(valid, key, kid, []fakekit.ClaimChange{
		{Name: "another issuer", Claim: "iss", Value: "https://evil.example"},
		{Name: "another audience", Claim: "aud", Value: "https://other.example"},
		{Name: "no sub", Claim: "sub", Value: nil},
		{Name: "expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := fakekit.SignJWT("PS256", key, valid, kid)
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged,
		fakekit.Forgery{Name: "PS256 by a key published for RS256", Token: ps},
		fakekit.Forgery{Name: "kid of no key", Token: fakekit.SignRS256(t, key, valid, map[string]any{"kid": "other"})},
		fakekit.Forgery{Name: "no kid", Token: fakekit.SignRS256(t, key, valid, nil)},
	)
	fakekit.ExpectRefused(t, forged, exchange, http.StatusBadRequest, http.StatusUnauthorized)
}
