package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestTokenKeyCandidatesBounded: one token's signature is checked
// against at most maxCandidateKeys keys. A refused token is not
// remembered, so before, every forged token without a kid made the
// gateway check it against every key of the issuer's set (a second of
// CPU each against a 1 MB key set of 6,000 EC keys); now a token whose
// kid (or lack of one) leaves more candidates is refused without a
// signature check, naming the fix. A kid naming one key of a large set,
// and a kid-less token of a set within the bound, verify as before.
func TestTokenKeyCandidatesBounded(t *testing.T) {
	clock := newFakeClock()
	const iss = "https://issuer.example"
	keys := make([]signingKey, maxCandidateKeys+1)
	for i := range keys {
		keys[i] = newECKey(t, fmt.Sprintf("k%d", i))
	}
	shared := make([]signingKey, maxCandidateKeys+1) // one kid for all
	for i := range shared {
		shared[i] = newECKey(t, "shared")
	}
	kidless := func(k signingKey) signingKey { return signingKey{alg: k.alg, key: k.key} }
	verifier := func(set []signingKey) *jwtVerifier {
		return newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwks(t, set...))}}})
	}
	large, within, sharedKid := verifier(keys), verifier(keys[:maxCandidateKeys]), verifier(shared)
	// One key more than the bound, of another alg: the bound counts the
	// keys the token's alg leaves.
	withRSA := append(append([]signingKey(nil), keys[:maxCandidateKeys]...), newRSAKey(t, "r"))
	mixed := verifier(withRSA)
	tests := []struct {
		name string
		v    *jwtVerifier
		tok  string
		ok   bool
	}{
		{"kid naming one key of a large set", large, keys[maxCandidateKeys].sign(t, std(iss, "s", "credgate")), true},
		{"no kid, set within the bound", within, kidless(keys[maxCandidateKeys-1]).sign(t, std(iss, "s", "credgate")), true},
		{"no kid, set within the bound for the token's alg", mixed, kidless(withRSA[maxCandidateKeys-1]).sign(t, std(iss, "s", "credgate")), true},
		{"no kid, set over the bound", large, kidless(keys[0]).sign(t, std(iss, "s", "credgate")), false},
		{"no kid, forged, set over the bound", large, kidless(newECKey(t, "")).sign(t, std(iss, "s", "credgate")), false},
		{"kid shared by more keys than the bound", sharedKid, shared[0].sign(t, std(iss, "s", "credgate")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(context.Background(), bearer(tt.tok))
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "kid header") {
				t.Fatalf("error %v; want ErrInvalid naming the kid header", err)
			}
		})
	}
}
