package vaulttest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// TestJWTLoginRefusesForgeries: the emulator's JWT auth method verifies
// a login JWT as Vault's does with jwt_validation_pubkeys (RS256 by a
// configured key, the role's bound_audiences and bound_subject, exp and
// nbf with a minute's leeway) and refuses forged signatures and wrong
// claims with 400, so the vault provider's JWT login is not tested
// against a server that takes anything.
func TestJWTLoginRefusesForgeries(t *testing.T) {
	clk := &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := NewServer(Options{Now: clk.Now})
	t.Cleanup(s.Close)
	key := fakekit.RSAKey(t)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	call := func(path, token string, body map[string]any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		r, err := http.NewRequest("POST", s.URL+"/v1/"+path, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			r.Header.Set("X-Vault-Token", token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, step := range []struct {
		path string
		body map[string]any
	}{
		{"sys/auth/jwt", map[string]any{"type": "jwt"}},
		{"auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}},
	} {
		if code := call(step.path, s.RootToken, step.body); code >= 300 {
			t.Fatalf("%s: %d", step.path, code)
		}
	}
	if code := call("auth/jwt/role/credgate", s.RootToken, map[string]any{"role_type": "jwt", "bound_audiences": []string{"vault"},
		"user_claim": "sub", "bound_subject": "system:serviceaccount:egress:credgate", "token_ttl": "1h"}); code >= 300 {
		t.Fatalf("role: %d", code)
	}
	login := func(tok string) int {
		return call("auth/jwt/login", "", map[string]any{"role": "credgate", "jwt": tok})
	}
	now := clk.Now()
	valid := map[string]any{"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:egress:credgate",
		"aud": []string{"vault"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	if code := login(fakekit.SignRS256(t, key, valid, nil)); code != http.StatusOK {
		t.Fatalf("a valid login JWT: %d", code)
	}
	forged, err := fakekit.RefusedTokens(valid, key, nil, []fakekit.ClaimChange{
		{Name: "another audience", Claim: "aud", Value: []string{"other"}},
		{Name: "no aud", Claim: "aud", Value: nil},
		{Name: "another subject", Claim: "sub", Value: "system:serviceaccount:egress:other"},
		{Name: "expired beyond the leeway", Claim: "exp", Value: now.Add(-2 * time.Minute).Unix()},
		{Name: "nbf beyond the leeway", Claim: "nbf", Value: now.Add(2 * time.Minute).Unix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	fakekit.ExpectRefused(t, forged, login, http.StatusBadRequest, http.StatusForbidden)
}
