package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors/injectortest"
)

// rfcRSAPSSPublic is test-key-rsa-pss's public key (RFC 9421 B.1.2).
const rfcRSAPSSPublic = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
`

// rfcBaseVectors are RFC 9421 B.2.2 and B.2.3 (rsa-pss-sha512, not
// deterministic): the signature base the RFC gives, and the signature it
// published over it with test-key-rsa-pss.
var rfcBaseVectors = []struct {
	name, settings, base, sig string
}{
	{
		name:     "B.2.2 selective",
		settings: "{label: sig-b22, algorithm: rsa-pss-sha512, key_id: test-key-rsa-pss, tag: header-example, content_digest: sha-512, components: ['@authority', content-digest, '@query-param;name=Pet']}",
		base: `"@authority": example.com
"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"@query-param";name="Pet": dog
"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"`,
		sig: "LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==",
	},
	{
		name:     "B.2.3 full coverage",
		settings: "{label: sig-b23, algorithm: rsa-pss-sha512, key_id: test-key-rsa-pss, content_digest: sha-512, components: [date, '@method', '@path', '@query', '@authority', content-type, content-digest, content-length]}",
		base: `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@query": ?param=Value&Pet=dog
"@authority": example.com
"content-type": application/json
"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"`,
		sig: "bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==",
	},
}

// TestRFC9421SignatureBases covers the RFC's non-deterministic vectors:
// the RFC's published signature verifies over the base written here (so
// it is the RFC's, byte for byte), and the injector's signature, made
// with a key of the test's own, verifies over that same base with the
// parameters RFC 9421 fixes (PSS with SHA-512 and a 64-byte salt; ECDSA
// P-256 r||s of 64 bytes): the injector signed exactly the RFC's base.
func TestRFC9421SignatureBases(t *testing.T) {
	blk, _ := pem.Decode([]byte(rfcRSAPSSPublic))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rfcPub := pub.(*rsa.PublicKey)
	pss := &rsa.PSSOptions{SaltLength: sha512.Size, Hash: crypto.SHA512}
	ours, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(k crypto.Signer) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	sigOf := func(t *testing.T, settings, key, label string) []byte {
		t.Helper()
		s := loadWith(t, settings)
		r := rfcRequest()
		if err := s.Inject(r, injectortest.Cred("private_key", key)); err != nil {
			t.Fatalf("Inject: %v", err)
		}
		v, ok := strings.CutPrefix(r.Header.Get("Signature"), label+"=:")
		if !ok {
			t.Fatalf("Signature %q", r.Header.Get("Signature"))
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(v, ":"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range rfcBaseVectors {
		t.Run(tt.name, func(t *testing.T) {
			digest := sha512.Sum512([]byte(tt.base))
			published, _ := base64.StdEncoding.DecodeString(tt.sig)
			if err := rsa.VerifyPSS(rfcPub, crypto.SHA512, digest[:], published, pss); err != nil {
				t.Fatalf("the RFC's signature does not verify over the base written here: %v", err)
			}
			label, _, _ := strings.Cut(tt.settings[len("{label: "):], ",")
			if err := rsa.VerifyPSS(&ours.PublicKey, crypto.SHA512, digest[:], sigOf(t, tt.settings, pemOf(ours), label), pss); err != nil {
				t.Errorf("the injector's rsa-pss-sha512 signature does not verify over the RFC's base (64-byte salt): %v", err)
			}
		})
	}
	t.Run("B.2.3 components with ecdsa-p256-sha256", func(t *testing.T) {
		settings := strings.Replace(rfcBaseVectors[1].settings, "rsa-pss-sha512", "ecdsa-p256-sha256", 1)
		sig := sigOf(t, settings, pemOf(ec), "sig-b23")
		if len(sig) != 64 {
			t.Fatalf("ecdsa-p256-sha256 signature of %d bytes, want r||s of 64 (RFC 9421 §3.3.4)", len(sig))
		}
		digest := sha256.Sum256([]byte(rfcBaseVectors[1].base))
		if !ecdsa.Verify(&ec.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Error("the injector's ecdsa-p256-sha256 signature does not verify over the RFC's base")
		}
	})
}
