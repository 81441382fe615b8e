package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestTokenClaimShapes: a token its issuer signed is judged on its
// claims, whatever their JSON shapes, and a refusal names the claims,
// never the signature: before, a token whose exp, nbf or iat was out of
// range or whose aud was a number was refused as "signature does not
// verify" (the claims were decoded while the signature was checked, and
// a decoding error read as a bad signature), and one whose exp, iss or
// sub had another type was not even taken for its issuer's ("no
// configured issuer accepts the token"). Legal shapes (aud as a list,
// exp with a fraction, exp within the clock skew) verify. A token signed
// by another key is still refused for its signature.
func TestTokenClaimShapes(t *testing.T) {
	clock := newFakeClock()
	key := newECKey(t, "k1")
	const iss = "https://issuer.example"
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwks(t, key))}}})
	now := t0.Unix()
	base := func(kv ...any) map[string]any {
		m := map[string]any{"iss": iss, "aud": "credgate", "sub": "s", "exp": now + 600}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	const claims, expired = "claims do not decode", "expired"
	tests := []struct {
		name   string
		claims map[string]any
		want   string // "" verifies; else a piece of the refusal
	}{
		{"aud as a list", base("aud", []string{"other", "credgate"}), ""},
		{"exp with a fraction", base("exp", float64(now)+600.5), ""},
		{"exp within the skew", base("exp", now-20), ""},
		{"exp past the skew", base("exp", now-40), expired},
		{"exp negative", base("exp", -5), expired},
		{"exp zero", base("exp", 0), expired},
		{"exp a string", base("exp", "99999999999"), claims},
		{"exp a boolean", base("exp", true), claims},
		{"exp an object", base("exp", map[string]any{"n": 1}), claims},
		{"exp out of range", base("exp", 1e300), claims},
		{"nbf out of range", base("nbf", 1e300), claims},
		{"iat out of range", base("iat", 1e300), claims},
		{"nbf a string", base("nbf", "0"), claims},
		{"aud a number", base("aud", 5), claims},
		{"aud a list with a number", base("aud", []any{"credgate", 5}), claims},
		{"sub a number", base("sub", 5), claims},
		{"cnf not an object", base("cnf", "x"), claims},
		{"no exp", base("exp", nil), "no exp"},
		{"iss with a trailing slash", base("iss", iss+"/"), "no configured issuer"},
		{"ISS instead of iss", base("iss", nil, "ISS", iss), "no configured issuer"},
		{"signed by another key", nil, "signature does not verify"},
	}
	r := NewResolver(v)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer := key
			c := tt.claims
			if c == nil {
				signer, c = newECKey(t, "k1"), base()
			}
			_, err := r.Resolve(context.Background(), bearer(signer.sign(t, c)), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want == "":
			case !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %v, want ErrInvalid saying %q", err, tt.want)
			case tt.want != "signature does not verify" && strings.Contains(err.Error(), "signature"):
				t.Fatalf("a token its issuer signed was refused for its signature: %v", err)
			}
		})
	}
}
