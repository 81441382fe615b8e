package salesforcetest_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/salesforcetest"
)

// TestFakeRefusesForgeries: the fake verifies the JWT bearer assertion as
// Salesforce does. One signed as Salesforce documents it (RS256 by the
// connected app's certificate key, iss the consumer key, aud the login
// URL, sub a pre-authorized user, exp within three minutes) gets a token;
// forged signatures and wrong claims are refused with 400.
func TestFakeRefusesForgeries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := salesforcetest.New(salesforcetest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "connected app"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddApp("3MVG9consumer", cert, "svc@acme.example"); err != nil {
		t.Fatal(err)
	}
	grant := func(assertion string) int {
		t.Helper()
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
		resp, err := s.Client().Post(s.URL+"/services/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(c map[string]any) string { return fakekit.SignRS256(t, key, c, nil) }
	valid := map[string]any{"iss": "3MVG9consumer", "aud": s.URL, "sub": "svc@acme.example", "exp": now.Add(3 * time.Minute).Unix()}
	if code := grant(sign(valid)); code != http.StatusOK {
		t.Fatalf("a valid assertion got %d; refusals %q", code, s.Refusals())
	}
	forged, err := fakekit.RefusedTokens(valid, key, nil, []fakekit.ClaimChange{
		{Name: "unknown consumer key", Claim: "iss", Value: "3MVG9other"},
		{Name: "aud another login URL", Claim: "aud", Value: "https://login.salesforce.com"},
		{Name: "no aud", Claim: "aud", Value: nil},
		{Name: "user not pre-authorized", Claim: "sub", Value: "intruder@acme.example"},
		{Name: "no sub", Claim: "sub", Value: nil},
		{Name: "expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "exp more than three minutes ahead", Claim: "exp", Value: now.Add(10 * time.Minute).Unix()},
		{Name: "no exp", Claim: "exp", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	fakekit.ExpectRefused(t, forged, grant, http.StatusBadRequest)
}
