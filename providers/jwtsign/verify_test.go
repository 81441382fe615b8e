package jwtsign_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/credgate/credgate/providers/jwtsign"
)

// TestVerifyIsStrict: Verify, which the fakes of outside services check
// signatures with, refuses what RFC 7518 forbids and a real service
// refuses, so a signer's bug cannot pass a fake: ECDSA signatures not of
// r and s padded to the curve's size (ASN.1 DER, r or s unpadded), an
// ECDSA key on another curve than the algorithm's, a PSS salt other than
// the hash's length, an RSA key under 2048 bits. The well-formed
// signature of each is accepted.
func TestVerifyIsStrict(t *testing.T) {
	keys(t)
	input := func(alg string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`))
	}
	tok := func(alg string, sig []byte) string {
		return input(alg) + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	digest := func(alg string) []byte {
		d := sha256.Sum256([]byte(input(alg)))
		return d[:]
	}
	es256 := func(k *ecdsa.PrivateKey, size int, keep func(r, s *big.Int) bool) []byte {
		for {
			r, s, err := ecdsa.Sign(rand.Reader, k, digest(jwtsign.ES256))
			if err != nil {
				t.Fatal(err)
			}
			if keep != nil && !keep(r, s) {
				continue
			}
			if size == 0 { // unpadded
				return append(r.Bytes(), s.Bytes()...)
			}
			out := make([]byte, 2*size)
			r.FillBytes(out[:size])
			s.FillBytes(out[size:])
			return out
		}
	}
	short := func(r, _ *big.Int) bool { return r.BitLen() <= 248 } // r's first byte is 0
	der, err := ecdsa.SignASN1(rand.Reader, ecKey, digest(jwtsign.ES256))
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pssMax, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest(jwtsign.PS256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	if err != nil {
		t.Fatal(err)
	}
	pssHash, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest(jwtsign.PS256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rs1024, err := rsa.SignPKCS1v15(rand.Reader, small, crypto.SHA256, digest(jwtsign.RS256))
	if err != nil {
		t.Fatal(err)
	}
	rs2048, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest(jwtsign.RS256))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		alg   string
		sig   []byte
		pub   crypto.PublicKey
		valid bool
	}{
		{"ES256 r||s padded", jwtsign.ES256, es256(ecKey, 32, nil), &ecKey.PublicKey, true},
		{"ES256 with a short r, padded", jwtsign.ES256, es256(ecKey, 32, short), &ecKey.PublicKey, true},
		{"ES256 with a short r, unpadded", jwtsign.ES256, es256(ecKey, 0, short), &ecKey.PublicKey, false},
		{"ES256 ASN.1 DER", jwtsign.ES256, der, &ecKey.PublicKey, false},
		{"ES256 by a P-384 key", jwtsign.ES256, es256(p384, 48, nil), &p384.PublicKey, false},
		{"PS256 salt as long as the hash", jwtsign.PS256, pssHash, &rsaKey.PublicKey, true},
		{"PS256 salt as long as possible", jwtsign.PS256, pssMax, &rsaKey.PublicKey, false},
		{"RS256 2048-bit key", jwtsign.RS256, rs2048, &rsaKey.PublicKey, true},
		{"RS256 1024-bit key", jwtsign.RS256, rs1024, &small.PublicKey, false},
	}
	for _, tt := range tests {
		_, _, err := jwtsign.Verify(tok(tt.alg, tt.sig), tt.alg, tt.pub)
		if (err == nil) != tt.valid {
			t.Errorf("%s: Verify error %v, want valid=%v", tt.name, err, tt.valid)
		}
	}
}
