package jwtsign_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/youmark/pkcs8"

	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
	"github.com/credgate/credgate/providers/vault"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	ec384Key *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func keys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec384Key, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// pemOf encodes key as PKCS#8 PEM, or PKCS#1/SEC 1 when legacy is set.
func pemOf(t *testing.T, key crypto.Signer, legacy bool) []byte {
	t.Helper()
	if legacy {
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		case *ecdsa.PrivateKey:
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyJose checks tok with go-jose, an implementation independent of
// jwtsign's own Verify, and returns the claims.
func verifyJose(t *testing.T, tok, alg string, pub crypto.PublicKey) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("go-jose cannot parse the JWS: %v", err)
	}
	if got := jws.Signatures[0].Header.Algorithm; got != alg {
		t.Errorf("alg %s, want %s", got, alg)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("signature does not verify with the public key: %v", err)
	}
	var claims map[string]any
	if err := jsonUnmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestSignEachAlgorithm(t *testing.T) {
	keys(t)
	claims := map[string]any{"iss": "123", "iat": float64(1700000000), "exp": float64(1700000600)}
	tests := []struct {
		alg    string
		key    crypto.Signer
		legacy bool
	}{
		{jwtsign.RS256, rsaKey, false},
		{jwtsign.RS256, rsaKey, true},
		{jwtsign.RS512, rsaKey, false},
		{jwtsign.PS256, rsaKey, false},
		{jwtsign.ES256, ecKey, false},
		{jwtsign.ES256, ecKey, true},
		{jwtsign.ES384, ec384Key, false},
		{jwtsign.EdDSA, edKey, false},
	}
	for _, tt := range tests {
		name := tt.alg
		if tt.legacy {
			name += "/legacy-pem"
		}
		t.Run(name, func(t *testing.T) {
			s, err := jwtsign.New(jwtsign.KeySource{File: writeFile(t, pemOf(t, tt.key, tt.legacy)), Algorithm: tt.alg, KeyID: "k1"}, "private_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(t.Context(), map[string]any{"x5t#S256": "abc"}, claims)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			got := verifyJose(t, tok, tt.alg, tt.key.Public())
			if diff := cmp.Diff(claims, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			hdr, _, err := jwtsign.Verify(tok, tt.alg, tt.key.Public())
			if err != nil {
				t.Fatalf("jwtsign.Verify: %v", err)
			}
			if diff := cmp.Diff(map[string]any{"alg": tt.alg, "typ": "JWT", "kid": "k1", "x5t#S256": "abc"}, hdr); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			// Another key's public key does not verify it.
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if _, _, err := jwtsign.Verify(tok, tt.alg, other.Public()); err == nil {
				t.Errorf("verified with an unrelated key")
			}
		})
	}
	t.Run("default algorithm from the key", func(t *testing.T) {
		for _, kw := range []struct {
			key  crypto.Signer
			want string
		}{{rsaKey, "RS256"}, {ecKey, "ES256"}, {ec384Key, "ES384"}, {edKey, "EdDSA"}} {
			key, want := kw.key, kw.want
			s, err := jwtsign.New(jwtsign.KeySource{File: writeFile(t, pemOf(t, key, false))}, "private_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(t.Context(), nil, claims)
			if err != nil {
				t.Fatal(err)
			}
			verifyJose(t, tok, want, key.Public())
		}
	})
}

func TestKeyErrors(t *testing.T) {
	keys(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("opaque")})
	tests := []struct {
		name string
		src  jwtsign.KeySource
		want string
	}{
		{"RSA key for ES256", jwtsign.KeySource{File: writeFile(t, pemOf(t, rsaKey, false)), Algorithm: "ES256"}, "wrong key type for ES256: the key is RSA; ES256 needs an ECDSA key on P-256"},
		{"EC key for RS256", jwtsign.KeySource{File: writeFile(t, pemOf(t, ecKey, false)), Algorithm: "RS256"}, "wrong key type for RS256: the key is ECDSA P-256; RS256 needs an RSA key"},
		{"P-384 key for ES256", jwtsign.KeySource{File: writeFile(t, pemOf(t, ec384Key, false)), Algorithm: "ES256"}, "on curve P-384; ES256 needs an ECDSA key on P-256"},
		{"Ed25519 key for PS256", jwtsign.KeySource{File: writeFile(t, pemOf(t, edKey, false)), Algorithm: "PS256"}, "the key is Ed25519"},
		{"RSA key too small", jwtsign.KeySource{File: writeFile(t, pemOf(t, small, false))}, "1024 bits; RS256 needs at least 2048"},
		{"unreadable file", jwtsign.KeySource{File: filepath.Join(t.TempDir(), "missing.pem")}, "cannot read the key (no such file or directory); check the path"},
		{"encrypted PKCS#8", jwtsign.KeySource{File: writeFile(t, encrypted)}, "the PEM private key is encrypted"},
		{"encrypted legacy PEM", jwtsign.KeySource{File: writeFile(t, legacyEncrypted)}, "the PEM private key is encrypted"},
		{"no PEM", jwtsign.KeySource{File: writeFile(t, []byte("not a key"))}, "no PEM private key found"},
		{"a certificate, not a key", jwtsign.KeySource{File: writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}))}, "no PEM private key found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := jwtsign.New(tt.src, "private_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Sign(t.Context(), nil, map[string]any{"iss": "x"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "private_key.file ") {
				t.Errorf("err = %v, want it to name the setting and file", err)
			}
			if strings.Contains(err.Error(), "opaque") || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("the error leaks key material: %v", err)
			}
		})
	}
	if _, err := jwtsign.NewFromKey(rsaKey, "EdDSA", ""); err == nil || !strings.Contains(err.Error(), "wrong key type for EdDSA") {
		t.Errorf("NewFromKey RSA/EdDSA: %v", err)
	}
	t.Run("header may not set alg", func(t *testing.T) {
		s, _ := jwtsign.NewFromKey(ecKey, "", "")
		if _, err := s.Sign(t.Context(), map[string]any{"alg": "none"}, nil); err == nil {
			t.Errorf("a header setting alg was accepted")
		}
	})
}

func TestSettings(t *testing.T) {
	tests := []struct {
		src  jwtsign.KeySource
		want string
	}{
		{jwtsign.KeySource{}, "private_key: set one of file, credential and transit"},
		{jwtsign.KeySource{File: "a", Credential: "b"}, "set one of file, credential and transit, not several"},
		{jwtsign.KeySource{File: "a", Algorithm: "HS256"}, `private_key.algorithm "HS256" is not one of RS256`},
		{jwtsign.KeySource{Transit: &jwtsign.Transit{Key: "k"}}, "private_key.transit needs key, and private_key.algorithm"},
		{jwtsign.KeySource{File: "a", Field: "pem"}, "private_key.field is set without private_key.credential"},
	}
	for _, tt := range tests {
		err := tt.src.Validate("private_key")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.src, err, tt.want)
		}
		if _, err := jwtsign.New(tt.src, "private_key", nil); err == nil {
			t.Errorf("New accepted %+v", tt.src)
		}
	}
}

// fakeProvider returns one credential, recording the request it got.
type fakeProvider struct {
	cred *providers.Credential
	err  error
	mu   sync.Mutex
	got  []providers.Request
}

func (f *fakeProvider) Fetch(_ context.Context, req providers.Request) (*providers.Credential, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.mu.Unlock()
	return f.cred, f.err
}

func TestKeyFromCredential(t *testing.T) {
	keys(t)
	in := &fakeProvider{cred: &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldPrivateKey: providers.NewSecret(string(pemOf(t, ecKey, false))),
	}}}
	inputs := map[string]providers.Provider{"app-key": in}
	fetch := jwtsign.FromInputs(func() map[string]providers.Provider { return inputs })
	src := jwtsign.KeySource{Credential: "app-key"}
	if diff := cmp.Diff([]string{"app-key"}, src.Inputs()); diff != "" {
		t.Errorf("Inputs (-want +got):\n%s", diff)
	}
	s, err := jwtsign.New(src, "private_key", fetch)
	if err != nil {
		t.Fatal(err)
	}
	ctx := jwtsign.WithRequest(t.Context(), providers.Request{Credential: "github"})
	tok, err := s.Sign(ctx, nil, map[string]any{"iss": "1"})
	if err != nil {
		t.Fatal(err)
	}
	verifyJose(t, tok, "ES256", ecKey.Public())
	if len(in.got) != 1 || in.got[0].Credential != "app-key" {
		t.Errorf("input fetched with %+v, want Credential app-key", in.got)
	}

	t.Run("missing field", func(t *testing.T) {
		s, _ := jwtsign.New(jwtsign.KeySource{Credential: "app-key", Field: "pem"}, "private_key", fetch)
		_, err := s.Sign(ctx, nil, nil)
		if err == nil || !strings.Contains(err.Error(), `private_key.credential "app-key" has no field pem`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("input fails", func(t *testing.T) {
		in.err = errors.Join(providers.ErrUnavailable)
		defer func() { in.err = nil }()
		_, err := s.Sign(ctx, nil, nil)
		if !errors.Is(err, providers.ErrUnavailable) {
			t.Errorf("err = %v, want it to wrap ErrUnavailable", err)
		}
	})
}

// TestSignKeyed: the claims are computed from the public key of the key
// that signs (Snowflake's iss names its fingerprint); a claims error is
// returned with the key's source.
func TestSignKeyed(t *testing.T) {
	keys(t)
	in := &fakeProvider{cred: &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldPrivateKey: providers.NewSecret(string(pemOf(t, ecKey, false))),
	}}}
	s, err := jwtsign.New(jwtsign.KeySource{Credential: "k"}, "private_key",
		jwtsign.FromInputs(func() map[string]providers.Provider { return map[string]providers.Provider{"k": in} }))
	if err != nil {
		t.Fatal(err)
	}
	ks, ok := s.(jwtsign.KeyedSigner)
	if !ok {
		t.Fatalf("%T is not a KeyedSigner", s)
	}
	var seen crypto.PublicKey
	tok, err := ks.SignKeyed(t.Context(), nil, func(pub crypto.PublicKey) (map[string]any, error) {
		seen = pub
		return map[string]any{"iss": "x"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ecKey.PublicKey.Equal(seen) {
		t.Errorf("claims saw %T, want the signing key's public key", seen)
	}
	verifyJose(t, tok, "ES256", ecKey.Public())
	_, err = ks.SignKeyed(t.Context(), nil, func(crypto.PublicKey) (map[string]any, error) { return nil, errors.New("boom") })
	if err == nil || !strings.Contains(err.Error(), `private_key.credential "k": boom`) {
		t.Errorf("err = %v", err)
	}
}

// encryptedPKCS8 returns rsaKey as an encrypted PKCS#8 PEM: written by
// the openssl command line with cipher (as Snowflake's and Salesforce's
// guides do), or by github.com/youmark/pkcs8 when cipher is "".
func encryptedPKCS8(t *testing.T, pass, cipher string) []byte {
	t.Helper()
	if cipher == "" {
		der, err := pkcs8.MarshalPrivateKey(rsaKey, []byte(pass), nil)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (Debian package openssl); the library-written key is tested without it")
	}
	in := writeFile(t, pemOf(t, rsaKey, false))
	out := filepath.Join(t.TempDir(), "enc.p8")
	cmd := exec.CommandContext(t.Context(), "openssl", "pkcs8", "-topk8", "-v2", cipher, "-in", in, "-out", out, "-passout", "env:CREDGATE_TEST_PASS")
	cmd.Env = append(os.Environ(), "CREDGATE_TEST_PASS="+pass)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs8: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncryptedKey: an encrypted PKCS#8 key is decrypted with the
// passphrase from another credential; a wrong or missing passphrase is an
// error that names the setting and holds neither key nor passphrase.
func TestEncryptedKey(t *testing.T) {
	keys(t)
	const pass = "correct horse battery staple"
	for _, cipher := range []string{"", "aes-256-cbc", "des3"} {
		t.Run("cipher="+cipher, func(t *testing.T) {
			file := writeFile(t, encryptedPKCS8(t, pass, cipher))
			in := &fakeProvider{cred: &providers.Credential{Fields: map[string]providers.Secret{
				providers.FieldPassword: providers.NewSecret(pass),
			}}}
			fetch := jwtsign.FromInputs(func() map[string]providers.Provider { return map[string]providers.Provider{"key-pass": in} })
			src := jwtsign.KeySource{File: file, Passphrase: &jwtsign.Passphrase{Credential: "key-pass"}}
			if diff := cmp.Diff([]string{"key-pass"}, src.Inputs()); diff != "" {
				t.Errorf("Inputs (-want +got):\n%s", diff)
			}
			s, err := jwtsign.New(src, "private_key", fetch)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(t.Context(), nil, map[string]any{"iss": "x"})
			if err != nil {
				t.Fatal(err)
			}
			verifyJose(t, tok, "RS256", rsaKey.Public())

			in.cred = &providers.Credential{Fields: map[string]providers.Secret{providers.FieldPassword: providers.NewSecret("wrong " + pass)}}
			_, err = s.Sign(t.Context(), nil, map[string]any{"iss": "x"})
			if !errors.Is(err, jwtsign.ErrWrongPassphrase) || !strings.HasPrefix(err.Error(), "private_key.file ") || strings.Contains(err.Error(), pass) {
				t.Errorf("wrong passphrase: err = %v, want ErrWrongPassphrase naming the file and not the passphrase", err)
			}
			in.cred = &providers.Credential{Fields: map[string]providers.Secret{"other": providers.NewSecret(pass)}}
			if _, err = s.Sign(t.Context(), nil, nil); err == nil || !strings.Contains(err.Error(), `private_key.passphrase.credential "key-pass" has no field password or token`) {
				t.Errorf("passphrase field missing: err = %v", err)
			}

			s, _ = jwtsign.New(jwtsign.KeySource{File: file}, "private_key", nil)
			if _, err := s.Sign(t.Context(), nil, nil); !errors.Is(err, jwtsign.ErrEncryptedKey) || !strings.Contains(err.Error(), "set passphrase") {
				t.Errorf("no passphrase: err = %v, want ErrEncryptedKey saying to set passphrase", err)
			}
		})
	}
	for _, bad := range []struct {
		src  jwtsign.KeySource
		want string
	}{
		{jwtsign.KeySource{Transit: &jwtsign.Transit{Key: "k"}, Algorithm: "RS256", Passphrase: &jwtsign.Passphrase{Credential: "p"}}, "a transit key never leaves Vault"},
		{jwtsign.KeySource{File: "k.pem", Passphrase: &jwtsign.Passphrase{}}, "private_key.passphrase: set credential"},
	} {
		if err := bad.src.Validate("private_key"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Validate(%+v) = %v, want %q", bad.src, err, bad.want)
		}
	}
}

// TestVaultTransit signs with transit keys of the in-repo Vault emulator
// and verifies with the public keys it publishes.
func TestVaultTransit(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	t.Setenv("CREDGATE_JWTSIGN_TEST_VAULT_TOKEN", emu.RootToken)
	vc, err := emu.MountTransit(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ alg, typ string }{{"RS256", "rsa-2048"}, {"PS256", "rsa-2048"}, {"ES256", "ecdsa-p256"}, {"EdDSA", "ed25519"}} {
		t.Run(tt.alg, func(t *testing.T) {
			key := strings.ToLower(tt.alg)
			if _, err := vc.Logical().WriteWithContext(t.Context(), "transit/keys/"+key, map[string]any{"type": tt.typ}); err != nil {
				t.Fatal(err)
			}
			s, err := jwtsign.New(jwtsign.KeySource{Algorithm: tt.alg, KeyID: "v1", Transit: &jwtsign.Transit{Key: key,
				Server: vault.Server{Address: emu.URL, Auth: vault.Auth{Method: vault.MethodToken, TokenEnv: "CREDGATE_JWTSIGN_TEST_VAULT_TOKEN"}}}}, "private_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.(interface{ Close() error }).Close() })
			tok, err := s.Sign(t.Context(), map[string]any{"x5t#S256": "thumb"}, map[string]any{"iss": "app"})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			claims := verifyJose(t, tok, tt.alg, emu.TransitPublicKey("transit", key))
			if claims["iss"] != "app" {
				t.Errorf("claims %v", claims)
			}
			hdr, _, err := jwtsign.Verify(tok, tt.alg, emu.TransitPublicKey("transit", key))
			if err != nil || hdr["x5t#S256"] != "thumb" || hdr["kid"] != "v1" {
				t.Errorf("header %v, err %v", hdr, err)
			}
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
