package snowflaketest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/snowflaketest"
)

// TestFakeRefusesForgeries: the fake verifies what Snowflake verifies. A
// key-pair JWT signed as Snowflake documents it is accepted; forged
// signatures (another key, alg none, HS256 with the public key, RS512, a
// claim changed after signing, a cut signature) and wrong claims (an iss
// naming another key, another user, expired, issued in the future, a
// lifetime over an hour, no iat) and a missing token type are refused.
func TestFakeRefusesForgeries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := snowflaketest.New(snowflaketest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	other := fakekit.RSAKey(t)
	const sub = "MYORG-ACCT.SVC_USER"
	s.SetUserKeys(sub, &key.PublicKey)
	s.SetUserKeys("MYORG-ACCT.OTHER", &other.PublicKey)
	valid := map[string]any{"iss": sub + "." + snowflaketest.Fingerprint(&key.PublicKey), "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	post := func(tok, tokenType string) int {
		t.Helper()
		r, err := http.NewRequest("POST", s.URL+"/api/v2/statements", strings.NewReader(`{"statement":"select 1"}`))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		if tokenType != "" {
			r.Header.Set("X-Snowflake-Authorization-Token-Type", tokenType)
		}
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(c map[string]any) string { return fakekit.SignRS256(t, key, c, nil) }
	if code := post(sign(valid), "KEYPAIR_JWT"); code != http.StatusOK {
		t.Fatalf("a valid key-pair JWT got %d; refusals %q", code, s.Rejected())
	}
	forged, err := fakekit.RefusedTokens(valid, key, nil, []fakekit.ClaimChange{
		{Name: "iss names another key's fingerprint", Claim: "iss", Value: sub + "." + snowflaketest.Fingerprint(&other.PublicKey)},
		{Name: "iss and sub of another user", Claim: "sub", Value: "MYORG-ACCT.OTHER"},
		{Name: "iss of another account", Claim: "iss", Value: "OTHERACCT.SVC_USER." + snowflaketest.Fingerprint(&key.PublicKey)},
		{Name: "expired", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "issued in the future", Claim: "iat", Value: now.Add(5 * time.Minute).Unix()},
		{Name: "lifetime over an hour", Claim: "exp", Value: now.Add(61 * time.Minute).Unix()},
		{Name: "no iat", Claim: "iat", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	fakekit.ExpectRefused(t, forged, func(tok string) int { return post(tok, "KEYPAIR_JWT") }, http.StatusUnauthorized)
	if code := post(sign(valid), ""); code != http.StatusUnauthorized {
		t.Errorf("no X-Snowflake-Authorization-Token-Type: %d, want 401", code)
	}
}

// TestFakeHoldsJWTsToTheirAccount: a valid JWT for one account is refused
// at another account's URL, whichever form of account URL it reaches;
// HostAccount reads the JWT's account identifier from each form.
func TestFakeHoldsJWTsToTheirAccount(t *testing.T) {
	for host, want := range map[string]string{
		"myorg-acct.snowflakecomputing.com":                    "MYORG-ACCT",
		"MyOrg-Acct.snowflakecomputing.com:443":                "MYORG-ACCT",
		"myorg-acct.privatelink.snowflakecomputing.com":        "MYORG-ACCT",
		"xy12345.us-east-2.aws.snowflakecomputing.com":         "XY12345",
		"xy12345-abcdefgh.global.snowflakecomputing.com":       "XY12345",
		"xy12345.eu-west-1.privatelink.snowflakecomputing.com": "XY12345",
	} {
		if got, ok := snowflaketest.HostAccount(host); !ok || got != want {
			t.Errorf("HostAccount(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
	for _, host := range []string{"127.0.0.1:443", "snowflakecomputing.com", "myorg-acct.snowflakecomputing.com.evil.example"} {
		if got, ok := snowflaketest.HostAccount(host); ok {
			t.Errorf("HostAccount(%q) = %q, want not an account URL", host, got)
		}
	}
	now := time.Unix(1_800_000_000, 0)
	s := snowflaketest.New(snowflaketest.Options{Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	const sub = "MYORG-ACCT.SVC_USER"
	s.SetUserKeys(sub, &key.PublicKey)
	tok := fakekit.SignRS256(t, key, map[string]any{"iss": sub + "." + snowflaketest.Fingerprint(&key.PublicKey), "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, nil)
	post := func(host string) int {
		t.Helper()
		r, err := http.NewRequest("POST", s.URL+"/api/v2/statements", strings.NewReader(`{"statement":"select 1"}`))
		if err != nil {
			t.Fatal(err)
		}
		r.Host = host
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Snowflake-Authorization-Token-Type", "KEYPAIR_JWT")
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for host, want := range map[string]int{
		"myorg-acct.snowflakecomputing.com":             200,
		"myorg-acct.privatelink.snowflakecomputing.com": 200,
		"myorg-other.snowflakecomputing.com":            401,
		"xy12345.us-east-2.aws.snowflakecomputing.com":  401,
	} {
		if got := post(host); got != want {
			t.Errorf("a MYORG-ACCT JWT at %s: %d, want %d", host, got, want)
		}
	}
}
