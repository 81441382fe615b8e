package identity

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// jwkWith is k's public JWK with members set (nil deletes one), as raw
// JSON: go-jose does not write key_ops.
func jwkWith(t *testing.T, k signingKey, members map[string]any) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range members {
		if v == nil {
			delete(m, name)
			continue
		}
		m[name] = v
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksOf(t *testing.T, keys ...json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJWKSKeyPurpose: a key in an issuer's key set verifies tokens only
// if nothing it declares excludes signature verification (RFC 7517 use,
// key_ops, alg). Before, only use "enc" was skipped: a key published to
// encrypt to the issuer (key_ops ["encrypt", "wrapKey"], use "ENC" or
// "tls") or a SPIFFE bundle's X.509 CA (use "x509-svid") verified tokens
// signed with its private key — 10 of the 16 refused cases below
// verified (the alg cases were refused already, by the kid/alg match).
// Each case is a key set of a signing key with those members, and a
// token that key signed.
func TestJWKSKeyPurpose(t *testing.T) {
	clock := newFakeClock()
	const iss = "https://issuer.example"
	ec := newECKey(t, "k1")
	rsaKey := newRSAKey(t, "r1")
	tests := []struct {
		name    string
		key     signingKey
		members map[string]any
		verify  bool
	}{
		{"no use, key_ops or alg", ec, map[string]any{"use": nil, "alg": nil}, true},
		{"use sig", ec, map[string]any{"use": "sig"}, true},
		{"use jwt-svid (a SPIFFE bundle's JWT authority)", ec, map[string]any{"use": "jwt-svid"}, true},
		{"use empty", ec, map[string]any{"use": ""}, true},
		{"key_ops verify", ec, map[string]any{"key_ops": []string{"verify"}}, true},
		{"key_ops sign and verify", ec, map[string]any{"key_ops": []string{"sign", "verify"}}, true},
		{"alg ES256", ec, map[string]any{"alg": "ES256"}, true},
		{"alg PS256 on an RSA key", rsaKey, map[string]any{"alg": nil}, true},

		{"use enc", ec, map[string]any{"use": "enc"}, false},
		{"use ENC", ec, map[string]any{"use": "ENC"}, false},
		{"use Sig", ec, map[string]any{"use": "Sig"}, false},
		{"use tls", ec, map[string]any{"use": "tls"}, false},
		{"use x509-svid (a SPIFFE bundle's X.509 CA)", ec, map[string]any{"use": "x509-svid"}, false},
		{"use not a string", ec, map[string]any{"use": []string{"sig"}}, false},
		{"key_ops encrypt and wrapKey", ec, map[string]any{"key_ops": []string{"encrypt", "wrapKey"}}, false},
		{"key_ops empty", ec, map[string]any{"key_ops": []string{}}, false},
		{"key_ops sign only", ec, map[string]any{"key_ops": []string{"sign"}}, false},
		{"key_ops VERIFY", ec, map[string]any{"key_ops": []string{"VERIFY"}}, false},
		{"key_ops a string", ec, map[string]any{"key_ops": "verify"}, false},
		{"use sig with key_ops encrypt", ec, map[string]any{"use": "sig", "key_ops": []string{"encrypt"}}, false},
		{"alg ECDH-ES", ec, map[string]any{"alg": "ECDH-ES"}, false},
		{"alg RSA-OAEP on an RSA key", rsaKey, map[string]any{"alg": "RSA-OAEP"}, false},
		{"alg HS256", ec, map[string]any{"alg": "HS256"}, false},
		{"alg none", ec, map[string]any{"alg": "none"}, false},
	}
	// Every key set also holds another issuer key, so that it loads and
	// the case's key is judged on its own.
	other := newECKey(t, "other")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alg := tt.key.alg
			if a, ok := tt.members["alg"].(string); ok && tt.verify {
				alg = jose.SignatureAlgorithm(a)
			}
			if tt.name == "alg PS256 on an RSA key" {
				alg = jose.PS256
			}
			file := writeFile(t, t.TempDir(), "jwks.json", jwksOf(t, jwkWith(t, tt.key, tt.members), jwkWith(t, other, nil)))
			v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: file}}})
			signer := signingKey{kid: tt.key.kid, alg: alg, key: tt.key.key}
			tok := signer.sign(t, std(iss, "svc", "credgate"))
			w, err := NewResolver(v).Resolve(context.Background(), bearer(tok), nil)
			if tt.verify {
				if err != nil || w.Factor(KindJWT) == nil {
					t.Fatalf("a token signed by a signing key was refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no "+string(alg)+" key with key id") {
				t.Fatalf("a token signed by a key not declared for signatures: error %v, want ErrInvalid naming the missing key", err)
			}
			// A key set of nothing but such keys does not load, and says why.
			_, perr := parseJWKS(jwksOf(t, jwkWith(t, tt.key, tt.members)))
			if perr == nil || !strings.Contains(perr.Error(), "key_ops") {
				t.Fatalf("a key set of only non-signing keys: %v, want an error naming the rule", perr)
			}
		})
	}
}
