package fakekit

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"strings"
)

// SignJWT signs claims as a compact JWS with key, written here apart from
// providers/jwtsign so that the tests of a fake do not sign with the code
// the fake verifies with. alg is RS256, RS512 or PS256 (key an
// *rsa.PrivateKey), HS256 (key a []byte) or none (key ignored, empty
// signature). extra adds header fields (kid, x5t#S256, ...).
func SignJWT(alg string, key any, claims map[string]any, extra map[string]any) (string, error) {
	header := map[string]any{"alg": alg, "typ": "JWT"}
	maps.Copy(header, extra)
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	var sig []byte
	switch alg {
	case "none":
	case "HS256":
		k, ok := key.([]byte)
		if !ok {
			return "", fmt.Errorf("fakekit: HS256 needs a []byte key")
		}
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "RS256", "RS512":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return "", fmt.Errorf("fakekit: %s needs an *rsa.PrivateKey", alg)
		}
		h, sum := crypto.SHA256, sha256.Sum256([]byte(input))
		digest := sum[:]
		if alg == "RS512" {
			s := sha512.Sum512([]byte(input))
			h, digest = crypto.SHA512, s[:]
		}
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, digest); err != nil {
			return "", err
		}
	case "PS256":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return "", fmt.Errorf("fakekit: PS256 needs an *rsa.PrivateKey")
		}
		sum := sha256.Sum256([]byte(input))
		if sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("fakekit: SignJWT does not sign %s", alg)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Forgery is a token a verifier must refuse, and what is wrong with it.
type Forgery struct {
	Name, Token string
}

// Forgeries returns tokens made from claims, which are valid when signed
// RS256 with key, that a verifier of RS256 JWTs must refuse whatever its
// claim rules: signed by another key, unsigned (alg none), signed HS256
// with the public key as the secret (algorithm confusion), signed with
// another algorithm (RS512), with a claim changed after signing, with the
// signature cut short. extra goes into every header.
func Forgeries(claims map[string]any, key *rsa.PrivateKey, extra map[string]any) ([]Forgery, error) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	var out []Forgery
	add := func(name, alg string, k any, c map[string]any) {
		if err != nil {
			return
		}
		var tok string
		tok, err = SignJWT(alg, k, c, extra)
		out = append(out, Forgery{name, tok})
	}
	add("signed by another key", "RS256", other, claims)
	add("alg none", "none", nil, claims)
	add("HS256 keyed with the public key (PEM)", "HS256", pubPEM, claims)
	add("HS256 keyed with the public key (DER)", "HS256", der, claims)
	add("RS512 instead of RS256", "RS512", key, claims)
	if err != nil {
		return nil, err
	}
	valid, err := SignJWT("RS256", key, claims, extra)
	if err != nil {
		return nil, err
	}
	changed := maps.Clone(claims)
	changed["jti"] = "changed-after-signing"
	tampered, err := SignJWT("RS256", other, changed, extra) // only its header and claims are used
	if err != nil {
		return nil, err
	}
	hdrClaims := tampered[:strings.LastIndexByte(tampered, '.')]
	out = append(out,
		Forgery{"claims changed after signing", hdrClaims + valid[strings.LastIndexByte(valid, '.'):]},
		Forgery{"signature cut short", valid[:len(valid)-8]},
		Forgery{"no signature", valid[:strings.LastIndexByte(valid, '.')+1]},
	)
	return out, nil
}

// ClaimChange is one claim of a valid set changed (Value) or removed
// (Value nil), and why a verifier must refuse the result.
type ClaimChange struct {
	Name, Claim string
	Value       any
}

// RefusedTokens returns the Forgeries of claims and, for each change, a
// token of claims with that one change, signed RS256 with key: every
// token a fake that verifies RS256 JWTs as its service does must refuse.
// extra goes into every header.
func RefusedTokens(claims map[string]any, key *rsa.PrivateKey, extra map[string]any, changes []ClaimChange) ([]Forgery, error) {
	out, err := Forgeries(claims, key, extra)
	if err != nil {
		return nil, err
	}
	for _, ch := range changes {
		c := maps.Clone(claims)
		if ch.Value == nil {
			delete(c, ch.Claim)
		} else {
			c[ch.Claim] = ch.Value
		}
		tok, err := SignJWT("RS256", key, c, extra)
		if err != nil {
			return nil, fmt.Errorf("fakekit: %s: %w", ch.Name, err)
		}
		out = append(out, Forgery{ch.Name, tok})
	}
	return out, nil
}
