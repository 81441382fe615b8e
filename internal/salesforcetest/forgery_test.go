package salesforcetest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
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
	key := addApp(t, s, now)
	grant := func(assertion string) int {
		t.Helper()
		code, _ := grantToken(t, s, assertion)
		return code
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

// addApp registers connected app 3MVG9consumer, pre-authorizing
// svc@acme.example, with a new key's self-signed certificate, and
// returns the key.
func addApp(t *testing.T, s *salesforcetest.Server, now time.Time) *rsa.PrivateKey {
	t.Helper()
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
	return key
}

// grantToken posts a JWT bearer grant and returns the status and the
// access token and instance_url granted.
func grantToken(t *testing.T, s *salesforcetest.Server, assertion string) (int, map[string]string) {
	t.Helper()
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	resp, err := s.Client().Post(s.URL+"/services/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestFakeHoldsTokensToTheirInstance: an access token opens the REST API
// only on the host of the instance_url it was issued with, and stops
// working when the org migrates (the old instance's sessions end).
func TestFakeHoldsTokensToTheirInstance(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := salesforcetest.New(salesforcetest.Options{Now: func() time.Time { return now }, Instance: "https://acme.my.salesforce.com"})
	t.Cleanup(s.Close)
	key := addApp(t, s, now)
	claims := map[string]any{"iss": "3MVG9consumer", "aud": s.URL, "sub": "svc@acme.example", "exp": now.Add(3 * time.Minute).Unix()}
	code, out := grantToken(t, s, fakekit.SignRS256(t, key, claims, nil))
	if code != http.StatusOK || out["access_token"] == "" || out["instance_url"] != "https://acme.my.salesforce.com" {
		t.Fatalf("grant: %d %v", code, out)
	}
	query := func(host, tok string) int {
		t.Helper()
		r, err := http.NewRequest("GET", s.URL+"/services/data/v62.0/query?q=SELECT+Id+FROM+Account", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = host
		r.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := out["access_token"]
	for _, c := range []struct {
		name, host, tok string
		want            int
	}{
		{"its instance", "acme.my.salesforce.com", tok, 200},
		{"another org's instance", "globex.my.salesforce.com", tok, 401},
		{"the login host", "login.salesforce.com", tok, 401},
		{"an unknown token", "acme.my.salesforce.com", "00Dunknown", 401},
	} {
		if got := query(c.host, c.tok); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	s.Migrate("https://acme2.my.salesforce.com")
	for _, host := range []string{"acme.my.salesforce.com", "acme2.my.salesforce.com"} {
		if got := query(host, tok); got != http.StatusUnauthorized {
			t.Errorf("the old token on %s after a migration: %d, want 401", host, got)
		}
	}
}
