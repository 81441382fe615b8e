package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// signWithHeader signs payload as a compact JWS with key and these
// header parameters; b64 false makes go-jose sign the payload unencoded
// (RFC 7797), as a detached-payload signer would.
func signWithHeader(t *testing.T, alg jose.SignatureAlgorithm, key any, hdr map[jose.HeaderKey]any, b64 bool, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range hdr {
		opts = opts.WithHeader(k, v)
	}
	if !b64 {
		opts = opts.WithBase64(false) // also sets crit: ["b64"]
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTokenHeaderExtensions: a token's header cannot change how it is
// verified. A token with "b64": false (go-jose then checks the signature
// over the unencoded payload, what an RFC 7797 signer signs: a signature
// the issuer's key made over any JSON document verified as a token)
// verified before, and one with any other "crit" was refused as a bad
// signature; both are now refused for their header, by name. Keys the
// header names or carries (jwk, jku, x5u, x5c) are never used: a token
// signed by the key it embeds is refused for its signature. Other header
// parameters (typ, cty, a null crit) change nothing.
func TestTokenHeaderExtensions(t *testing.T) {
	clock := newFakeClock()
	key := newECKey(t, "k1")
	const iss = "https://issuer.example"
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwks(t, key))}}})
	payload, err := json.Marshal(map[string]any{"iss": iss, "aud": "credgate", "sub": "svc", "exp": t0.Unix() + 600})
	if err != nil {
		t.Fatal(err)
	}
	attacker := newCA(t, "attacker") // a key and a self-signed certificate
	attackerJWK := jose.JSONWebKey{Key: attacker.key.Public(), KeyID: "k1", Use: "sig"}
	x5c := []string{base64.StdEncoding.EncodeToString(attacker.cert.Raw)}
	withKID := func(kv ...any) map[jose.HeaderKey]any {
		h := map[jose.HeaderKey]any{"kid": "k1"}
		for i := 0; i < len(kv); i += 2 {
			h[jose.HeaderKey(kv[i].(string))] = kv[i+1]
		}
		return h
	}
	const header, signature = "JWS extension", "signature does not verify"
	tests := []struct {
		name string
		tok  string
		want string // "": verifies; else a piece of the refusal
	}{
		{"plain", signWithHeader(t, jose.ES256, key.key, withKID(), true, payload), ""},
		{"typ at+jwt", signWithHeader(t, jose.ES256, key.key, withKID("typ", "at+jwt"), true, payload), ""},
		{"cty JWT over JSON claims", signWithHeader(t, jose.ES256, key.key, withKID("cty", "JWT"), true, payload), ""},
		{"crit null", signWithHeader(t, jose.ES256, key.key, withKID("crit", nil), true, payload), ""},

		{"b64 false, unencoded payload signed", signWithHeader(t, jose.ES256, key.key, withKID(), false, payload), header},
		{"b64 true under crit", signWithHeader(t, jose.ES256, key.key, withKID("b64", true, "crit", []string{"b64"}), true, payload), header},
		{"b64 true without crit", signWithHeader(t, jose.ES256, key.key, withKID("b64", true), true, payload), header},
		{"crit naming a parameter go-jose does not know", signWithHeader(t, jose.ES256, key.key, withKID("crit", []string{"exp"}, "exp", 1), true, payload), header},
		{"crit empty", signWithHeader(t, jose.ES256, key.key, withKID("crit", []string{}), true, payload), header},

		{"jwk of the signing attacker", signWithHeader(t, jose.ES256, attacker.key, withKID("jwk", attackerJWK), true, payload), signature},
		{"jku naming the attacker's key set", signWithHeader(t, jose.ES256, attacker.key, withKID("jku", "https://127.0.0.1:1/jwks"), true, payload), signature},
		{"x5u naming the attacker's certificate", signWithHeader(t, jose.ES256, attacker.key, withKID("x5u", "https://127.0.0.1:1/cert"), true, payload), signature},
		{"x5c of the attacker's certificate", signWithHeader(t, jose.ES256, attacker.key, withKID("x5c", x5c), true, payload), signature},
		{"x5c and no kid", signWithHeader(t, jose.ES256, attacker.key, map[jose.HeaderKey]any{"x5c": x5c}, true, payload), signature},
	}
	r := NewResolver(v)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := r.Resolve(context.Background(), bearer(tt.tok), nil)
			switch {
			case tt.want == "" && (err != nil || w.Factor(KindJWT) == nil):
				t.Fatalf("refused: %v", err)
			case tt.want == "":
			case !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}
