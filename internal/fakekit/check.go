package fakekit

import (
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"testing"
)

// RSAKey returns a new 2048-bit RSA key, failing t if none can be made.
func RSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// SignRS256 returns claims signed RS256 with key, extra in its header,
// failing t if it cannot be signed.
func SignRS256(t testing.TB, key *rsa.PrivateKey, claims, extra map[string]any) string {
	t.Helper()
	tok, err := SignJWT("RS256", key, claims, extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ExpectRefused sends every forgery's token with send and fails t for
// each one answered with a status other than those in refused.
func ExpectRefused(t testing.TB, forged []Forgery, send func(token string) int, refused ...int) {
	t.Helper()
	for _, f := range forged {
		if code := send(f.Token); !slices.Contains(refused, code) {
			t.Errorf("%s: %d, want one of %v", f.Name, code, refused)
		}
	}
}
