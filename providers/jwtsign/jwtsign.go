// Package jwtsign signs JWTs for the providers that mint credentials with
// them: a GitHub App JWT, an OAuth2 private_key_jwt client assertion, a
// Google service-account assertion. It exists so that no provider carries
// its own copy of key parsing and JWS signing, and no plugin imports
// another plugin to borrow it.
//
// A Signer signs with RS256, RS384, RS512, PS256, PS384, PS512, ES256,
// ES384, ES512 or EdDSA. Its key comes from one of three places, the
// KeySource settings a provider embeds under a key of its own
// (`private_key:`, `client_key:`):
//
//	private_key:
//	  file: /run/secrets/app.pem          # a PEM file, read at every signing
//	  # credential: app-key              # or another credential of the policy (composition)
//	  # field: private_key               #   its field; default private_key, then token
//	  # transit: {server: {...}, key: k}  # or a Vault transit key that never leaves Vault
//	  passphrase: {credential: key-pass}  # for an encrypted PKCS#8 key: another credential holding the passphrase
//	  algorithm: RS256                    # default from the key
//	  key_id: k1                          # the JWS kid header, if wanted
//
// A PEM key is parsed at every signing, so a rotated file or credential is
// picked up at the next token fetch. An encrypted PKCS#8 key (BEGIN
// ENCRYPTED PRIVATE KEY: PBES2 with PBKDF2 or scrypt, AES or 3DES, what
// `openssl pkcs8 -topk8` writes) is decrypted with a passphrase read from
// another credential, through github.com/youmark/pkcs8. Errors name the key's source and what
// to change (wrong key type for the algorithm, encrypted key, no key in
// the file) and never contain key material.
package jwtsign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/youmark/pkcs8"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/vault"
)

// JWS algorithms a Signer can use.
const (
	RS256 = "RS256"
	RS384 = "RS384"
	RS512 = "RS512"
	PS256 = "PS256"
	PS384 = "PS384"
	PS512 = "PS512"
	ES256 = "ES256"
	ES384 = "ES384"
	ES512 = "ES512"
	EdDSA = "EdDSA"
)

// Algorithms lists the supported JWS algorithms.
var Algorithms = []string{RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA}

// MinRSABits is the smallest RSA key a Signer accepts (RFC 7518 §3.3).
const MinRSABits = 2048

// Signer signs JWT claims into a compact JWS. Implementations are safe
// for concurrent use and honour ctx (a Vault transit key or a key kept in
// another credential is fetched over the network).
type Signer interface {
	// Sign returns header.claims.signature. header holds extra JWS header
	// parameters (nil for none); it may not set alg, which is the
	// Signer's Algorithm. typ defaults to "JWT" and kid to the key's
	// key_id.
	Sign(ctx context.Context, header, claims map[string]any) (string, error)
	// Algorithm returns the JWS alg the Signer signs with ("" when it is
	// taken from a key not read yet).
	Algorithm() string
}

// BytesSigner signs arbitrary bytes under the Signer's JWS algorithm and
// returns the signature as a JWS carries it (r || s for ECDSA, PSS with a
// salt as long as the hash). HTTP Message Signatures (RFC 9421) sign their
// signature base this way. Every Signer New returns is a BytesSigner.
type BytesSigner interface {
	SignBytes(ctx context.Context, input []byte) ([]byte, error)
	Algorithm() string
}

// KeyedSigner is a Signer whose claims may depend on the public key that
// signs them: Snowflake's key-pair JWT names the key's fingerprint in its
// iss claim. The claims are computed from the very key that signs, so a
// key file rotated between two reads can never yield a token whose claims
// name one key and whose signature is by another. Signers over a PEM key
// (file or credential) implement it; a Vault transit signer does not.
type KeyedSigner interface {
	Signer
	// SignKeyed reads the key once, calls claims with its public key and
	// signs what claims returns.
	SignKeyed(ctx context.Context, header map[string]any, claims func(pub crypto.PublicKey) (map[string]any, error)) (string, error)
}

// KeySource says where a signing key comes from. Set exactly one of File,
// Credential and Transit. Providers embed it under a setting of their own
// and call Validate and New from Provision/Validate.
type KeySource struct {
	// File is a PEM file holding the private key (PKCS#8, PKCS#1 RSA or
	// SEC 1 EC; an encrypted PKCS#8 key with Passphrase). It is read at
	// every signing.
	File string `yaml:"file"`
	// Credential names another credential of the policy whose field holds
	// the PEM private key (providers compose by reference).
	Credential string `yaml:"credential"`
	// Field is that credential's field. Default "private_key", then
	// "token".
	Field string `yaml:"field"`
	// Transit signs with a Vault transit key that never leaves Vault.
	Transit *Transit `yaml:"transit"`
	// Passphrase, for an encrypted PKCS#8 key (File or Credential), names
	// the credential holding its passphrase.
	Passphrase *Passphrase `yaml:"passphrase"`
	// Algorithm is the JWS alg. Default: RS256 for RSA keys, ES256/ES384/
	// ES512 for P-256/P-384/P-521, EdDSA for Ed25519. Required with
	// Transit.
	Algorithm string `yaml:"algorithm"`
	// KeyID is the JWS kid header, if the verifier needs one.
	KeyID string `yaml:"key_id"`
}

// Passphrase is where an encrypted key's passphrase comes from: another
// credential of the policy (static from the gateway's environment, Vault
// KV, ...).
type Passphrase struct {
	// Credential names the credential holding the passphrase. Required.
	Credential string `yaml:"credential"`
	// Field is that credential's field. Default "password", then "token".
	Field string `yaml:"field"`
}

// Transit is a Vault transit key used to sign.
type Transit struct {
	// Server is the Vault server and the gateway's login to it (the same
	// mapping as the vault provider's server:).
	Server vault.Server `yaml:"server"`
	// Mount is where the transit engine is enabled. Default "transit".
	Mount string `yaml:"mount"`
	// Key is the transit key's name. Required.
	Key string `yaml:"key"`
}

// CheckSources reports, as providers.SourceChecker does, the key file
// (File) or the transit login's file or variable (Transit) when it cannot
// be read now, and as a warning when its mode is loose
// (providers.CheckSecretFile); prefix is the path of k's settings ("private_key."), and
// module names the provider in the messages.
func (k KeySource) CheckSources(module, prefix string) []providers.SourceProblem {
	switch {
	case k.File != "":
		return providers.CheckSecretFile(module, prefix+"file", k.File, "the PEM private key")
	case k.Transit != nil:
		out := k.Transit.Server.CheckSources(prefix + "transit.server.")
		for i := range out {
			out[i].Err = fmt.Errorf("%s: %w", module, out[i].Err)
		}
		return out
	}
	return nil
}

// IsSet reports whether any of File, Credential and Transit is set.
func (k KeySource) IsSet() bool { return k.File != "" || k.Credential != "" || k.Transit != nil }

// Validate checks the settings; setting is the key they sit under
// ("private_key"), for the messages. It reads nothing.
func (k KeySource) Validate(setting string) error {
	n := 0
	for _, set := range []bool{k.File != "", k.Credential != "", k.Transit != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%s: set one of file, credential and transit", setting)
	case n > 1:
		return fmt.Errorf("%s: set one of file, credential and transit, not several", setting)
	case k.Algorithm != "" && !slices.Contains(Algorithms, k.Algorithm):
		return fmt.Errorf("%s.algorithm %q is not one of %s", setting, k.Algorithm, strings.Join(Algorithms, ", "))
	case k.Transit != nil && (k.Transit.Key == "" || k.Algorithm == ""):
		return fmt.Errorf("%s.transit needs key, and %s.algorithm (the transit key's JWS alg)", setting, setting)
	case k.Field != "" && k.Credential == "":
		return fmt.Errorf("%s.field is set without %s.credential", setting, setting)
	case k.Passphrase != nil && k.Transit != nil:
		return fmt.Errorf("%s.passphrase is for an encrypted PEM key (file or credential); a transit key never leaves Vault", setting)
	case k.Passphrase != nil && k.Passphrase.Credential == "":
		return fmt.Errorf("%s.passphrase: set credential (the credential holding the key's passphrase)", setting)
	}
	return nil
}

// Inputs returns the credential the key is read from, if any, for a
// providers.Composer's Inputs.
func (k KeySource) Inputs() []string {
	var in []string
	if k.Credential != "" {
		in = append(in, k.Credential)
	}
	if k.Passphrase != nil && k.Passphrase.Credential != "" && k.Passphrase.Credential != k.Credential {
		in = append(in, k.Passphrase.Credential)
	}
	return in
}

// Fetcher fetches another credential of the policy by name; a composing
// provider passes one built from the inputs it was given (see FromInputs).
type Fetcher func(ctx context.Context, name string) (*providers.Credential, error)

// FromInputs returns a Fetcher over a Composer's inputs: it fetches input
// name with the Request in ctx (see WithRequest), its Credential set to
// name.
func FromInputs(inputs func() map[string]providers.Provider) Fetcher {
	return func(ctx context.Context, name string) (*providers.Credential, error) {
		p := inputs()[name]
		if p == nil {
			return nil, fmt.Errorf("input credential %q was not provided", name)
		}
		req, _ := ctx.Value(requestKey{}).(providers.Request)
		req.Credential = name
		return p.Fetch(ctx, req)
	}
}

type requestKey struct{}

// WithRequest returns ctx carrying req, so that a key read from another
// credential is fetched for the same caller as the credential being made.
func WithRequest(ctx context.Context, req providers.Request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// New returns the Signer of k; setting names k in messages
// ("private_key"). fetch reads the key from another credential and is
// required when k.Credential is set. A transit key gets its own Vault
// client: call Close on the result (it implements io.Closer then) when
// the provider is cleaned up. New reads and contacts nothing.
func New(k KeySource, setting string, fetch Fetcher) (Signer, error) {
	if err := k.Validate(setting); err != nil {
		return nil, err
	}
	switch {
	case k.Transit != nil:
		c, err := vault.NewClient(k.Transit.Server)
		if err != nil {
			return nil, fmt.Errorf("%s.transit: %w", setting, err)
		}
		return &transitSigner{ts: &vault.TransitSigner{Client: c, Mount: k.Transit.Mount, Key: k.Transit.Key,
			Algorithm: k.Algorithm, KeyID: k.KeyID}}, nil
	case k.Passphrase != nil && fetch == nil:
		return nil, fmt.Errorf("%s.passphrase.credential %q: no way to read other credentials was given", setting, k.Passphrase.Credential)
	case k.File != "":
		where := setting + ".file " + k.File
		return &pemSigner{alg: k.Algorithm, kid: k.KeyID, where: where, pass: passphraseReader(k, setting, fetch), read: func(ctx context.Context) ([]byte, error) {
			return providers.ReadFile(ctx, setting+".file", "the key", k.File)
		}}, nil
	default:
		if fetch == nil {
			return nil, fmt.Errorf("%s.credential %q: no way to read other credentials was given", setting, k.Credential)
		}
		where := fmt.Sprintf("%s.credential %q", setting, k.Credential)
		fields := []string{providers.FieldPrivateKey, providers.FieldToken}
		if k.Field != "" {
			fields = []string{k.Field}
		}
		return &pemSigner{alg: k.Algorithm, kid: k.KeyID, where: where, pass: passphraseReader(k, setting, fetch), read: func(ctx context.Context) ([]byte, error) {
			c, err := fetch(ctx, k.Credential)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			for _, f := range fields {
				if s, ok := c.Field(f); ok {
					return []byte(s.Reveal()), nil
				}
			}
			return nil, fmt.Errorf("%s has no field %s holding the PEM key", where, strings.Join(fields, " or "))
		}}, nil
	}
}

// passphraseReader returns how to read k's passphrase, nil without one.
func passphraseReader(k KeySource, setting string, fetch Fetcher) func(context.Context) ([]byte, error) {
	if k.Passphrase == nil {
		return nil
	}
	where := fmt.Sprintf("%s.passphrase.credential %q", setting, k.Passphrase.Credential)
	fields := []string{providers.FieldPassword, providers.FieldToken}
	if k.Passphrase.Field != "" {
		fields = []string{k.Passphrase.Field}
	}
	return func(ctx context.Context) ([]byte, error) {
		c, err := fetch(ctx, k.Passphrase.Credential)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		for _, f := range fields {
			if s, ok := c.Field(f); ok {
				return []byte(s.Reveal()), nil
			}
		}
		return nil, fmt.Errorf("%s has no field %s holding the passphrase", where, strings.Join(fields, " or "))
	}
}

// NewFromKey returns a Signer over a parsed key, for tests and callers
// that hold the key themselves. alg "" picks the key's default.
func NewFromKey(key crypto.Signer, alg, keyID string) (Signer, error) {
	if alg == "" {
		alg = DefaultAlgorithm(key)
	}
	if err := CheckKey(alg, key); err != nil {
		return nil, err
	}
	return &pemSigner{alg: alg, kid: keyID, where: "key", key: key}, nil
}

// pemSigner signs with a PEM private key, read at every signing (or a
// fixed key from NewFromKey).
type pemSigner struct {
	alg, kid, where string
	read            func(context.Context) ([]byte, error)
	// pass reads the passphrase of an encrypted key; nil for none.
	pass func(context.Context) ([]byte, error)
	key  crypto.Signer
}

func (s *pemSigner) Algorithm() string { return s.alg }

// keyAndAlg reads and parses the key (decrypting it with the passphrase,
// if one is configured), or returns the fixed one, and the algorithm to
// sign with, checked against it.
func (s *pemSigner) keyAndAlg(ctx context.Context) (crypto.Signer, string, error) {
	key := s.key
	if key == nil {
		data, err := s.read(ctx)
		if err != nil {
			return nil, "", err
		}
		var pass []byte
		if s.pass != nil {
			if pass, err = s.pass(ctx); err != nil {
				return nil, "", err
			}
		}
		key, err = ParseEncryptedPrivateKey(data, pass)
		clear(pass)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", s.where, err)
		}
	}
	alg := s.alg
	if alg == "" {
		alg = DefaultAlgorithm(key)
	}
	if err := CheckKey(alg, key); err != nil {
		return nil, "", fmt.Errorf("%s: %w", s.where, err)
	}
	return key, alg, nil
}

// SignBytes implements BytesSigner.
func (s *pemSigner) SignBytes(ctx context.Context, input []byte) ([]byte, error) {
	key, alg, err := s.keyAndAlg(ctx)
	if err != nil {
		return nil, err
	}
	sig, err := signInput(alg, key, input)
	if err != nil {
		return nil, fmt.Errorf("%s: sign %s: %w", s.where, alg, err)
	}
	return sig, nil
}

func (s *pemSigner) Sign(ctx context.Context, header, claims map[string]any) (string, error) {
	return s.SignKeyed(ctx, header, func(crypto.PublicKey) (map[string]any, error) { return claims, nil })
}

// SignKeyed implements KeyedSigner.
func (s *pemSigner) SignKeyed(ctx context.Context, header map[string]any, claimsOf func(crypto.PublicKey) (map[string]any, error)) (string, error) {
	key, alg, err := s.keyAndAlg(ctx)
	if err != nil {
		return "", err
	}
	claims, err := claimsOf(key.Public())
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.where, err)
	}
	input, err := signingInput(alg, s.kid, header, claims)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.where, err)
	}
	sig, err := signInput(alg, key, []byte(input))
	if err != nil {
		return "", fmt.Errorf("%s: sign %s: %w", s.where, alg, err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// transitSigner signs with a Vault transit key.
type transitSigner struct{ ts *vault.TransitSigner }

func (s *transitSigner) Algorithm() string { return s.ts.Algorithm }

func (s *transitSigner) Sign(ctx context.Context, header, claims map[string]any) (string, error) {
	return s.ts.SignJWTWithHeader(ctx, header, claims)
}

// SignBytes implements BytesSigner.
func (s *transitSigner) SignBytes(ctx context.Context, input []byte) ([]byte, error) {
	return s.ts.SignBytes(ctx, input)
}

// Close releases the Vault client.
func (s *transitSigner) Close() error { return s.ts.Client.Close() }

// signingInput is base64url(header).base64url(claims).
func signingInput(alg, kid string, header, claims map[string]any) (string, error) {
	if _, ok := header["alg"]; ok {
		return "", errors.New("the JWS header may not set alg; set algorithm")
	}
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	for k, v := range header {
		h[k] = v
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encode the JWS header: %w", err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode the claims: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj), nil
}

// hashOf returns the hash of an RS*, PS* or ES* algorithm.
func hashOf(alg string) crypto.Hash {
	switch alg[2:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

// signInput signs input with key under alg; CheckKey has passed.
func signInput(alg string, key crypto.Signer, input []byte) ([]byte, error) {
	if alg == EdDSA {
		return key.Sign(rand.Reader, input, crypto.Hash(0))
	}
	h := hashOf(alg)
	hh := h.New()
	hh.Write(input)
	digest := hh.Sum(nil)
	switch alg[:2] {
	case "RS":
		return rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, digest)
	case "PS":
		return rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default: // ES*: r || s, each the curve's size (RFC 7518 §3.4)
		k := key.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
}

// curves maps ES* algorithms to their curve.
var curves = map[string]elliptic.Curve{ES256: elliptic.P256(), ES384: elliptic.P384(), ES512: elliptic.P521()}

// CheckKey reports whether key can sign alg, with an error that says
// which key the algorithm needs.
func CheckKey(alg string, key crypto.Signer) error {
	if !slices.Contains(Algorithms, alg) {
		return fmt.Errorf("algorithm %q is not one of %s", alg, strings.Join(Algorithms, ", "))
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if alg[:2] != "RS" && alg[:2] != "PS" {
			return fmt.Errorf("wrong key type for %s: the key is RSA; %s needs %s (or set algorithm: RS256)", alg, alg, needs(alg))
		}
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("the RSA key has %d bits; %s needs at least %d", k.N.BitLen(), alg, MinRSABits)
		}
	case *ecdsa.PrivateKey:
		want, ok := curves[alg]
		if !ok {
			return fmt.Errorf("wrong key type for %s: the key is ECDSA %s; %s needs %s (or set algorithm: %s)", alg, k.Curve.Params().Name, alg, needs(alg), DefaultAlgorithm(k))
		}
		if k.Curve != want {
			return fmt.Errorf("wrong key type for %s: the key is on curve %s; %s needs %s", alg, k.Curve.Params().Name, alg, needs(alg))
		}
	case ed25519.PrivateKey:
		if alg != EdDSA {
			return fmt.Errorf("wrong key type for %s: the key is Ed25519; %s needs %s (or set algorithm: EdDSA)", alg, alg, needs(alg))
		}
	default:
		return fmt.Errorf("wrong key type for %s: %T keys are not supported; %s needs %s", alg, key, alg, needs(alg))
	}
	return nil
}

// needs describes the key alg needs.
func needs(alg string) string {
	switch {
	case alg == EdDSA:
		return "an Ed25519 key"
	case alg[:2] == "ES":
		return "an ECDSA key on " + curves[alg].Params().Name
	}
	return fmt.Sprintf("an RSA key of at least %d bits", MinRSABits)
}

// DefaultAlgorithm picks the JWS alg for a key: RS256 for RSA, ES256/
// ES384/ES512 by curve, EdDSA for Ed25519.
func DefaultAlgorithm(k crypto.Signer) string {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P384():
			return ES384
		case elliptic.P521():
			return ES512
		}
		return ES256
	case ed25519.PrivateKey:
		return EdDSA
	}
	return RS256
}

// ErrEncryptedKey is returned for a password-protected PEM key read
// without a passphrase, and for a legacy OpenSSL-encrypted PEM key
// ("Proc-Type: 4,ENCRYPTED"), which the gateway does not decrypt.
var ErrEncryptedKey = errors.New("the PEM private key is encrypted; set passphrase: {credential: NAME} beside the key (an encrypted PKCS#8 key), store it unencrypted in a secret store (Vault, a Kubernetes Secret), or use a Vault transit key")

// ErrWrongPassphrase is returned when an encrypted PKCS#8 key does not
// decrypt with the passphrase given.
var ErrWrongPassphrase = errors.New("the encrypted PKCS#8 key does not decrypt with the passphrase (a wrong passphrase, or a cipher other than AES or 3DES with PBKDF2 or scrypt); check the passphrase credential")

// ParsePrivateKey parses the first PEM private key in data: PKCS#8,
// PKCS#1 RSA or SEC 1 EC, not encrypted. Errors never contain key
// material.
func ParsePrivateKey(data []byte) (crypto.Signer, error) { return ParseEncryptedPrivateKey(data, nil) }

// ParseEncryptedPrivateKey is ParsePrivateKey that also decrypts an
// encrypted PKCS#8 key (BEGIN ENCRYPTED PRIVATE KEY) with passphrase,
// when passphrase is not nil. Errors never contain key material or the
// passphrase.
func ParseEncryptedPrivateKey(data, passphrase []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found (want a PEM block of type PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		if !strings.Contains(b.Type, "PRIVATE KEY") {
			continue
		}
		// Legacy OpenSSL "Proc-Type: 4,ENCRYPTED" (MD5 key derivation,
		// deprecated in crypto/x509): refused.
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" && passphrase == nil {
			return nil, ErrEncryptedKey
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" {
			k, err := pkcs8.ParsePKCS8PrivateKey(b.Bytes, passphrase)
			if err != nil {
				return nil, ErrWrongPassphrase // its message could say more than we want to print
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, errors.New("the PKCS#8 key is not a signing key")
			}
			return s, nil
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, errors.New("the PKCS#8 key is not a signing key")
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("the %s block is not a PKCS#8, PKCS#1 or SEC 1 private key", b.Type)
	}
}

// Verify checks a compact JWS's signature with pub under the alg of its
// header, which must be want. It returns the decoded header and claims.
// Fakes of the services credgate signs for use it; it is no JWT library
// (it checks no claims).
func Verify(token, want string, pub crypto.PublicKey) (header, claims map[string]any, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not a compact JWS")
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, nil, fmt.Errorf("claims: %w", err)
	}
	if header["alg"] != want {
		return nil, nil, fmt.Errorf("alg %v, want %s", header["alg"], want)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	input := []byte(parts[0] + "." + parts[1])
	if err := verifySig(want, pub, input, sig); err != nil {
		return nil, nil, err
	}
	return header, claims, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func verifySig(alg string, pub crypto.PublicKey, input, sig []byte) error {
	bad := errors.New("signature does not verify")
	if alg == EdDSA {
		k, ok := pub.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(k, input, sig) {
			return bad
		}
		return nil
	}
	if !slices.Contains(Algorithms, alg) {
		return fmt.Errorf("algorithm %q is not supported", alg)
	}
	h := hashOf(alg)
	hh := h.New()
	hh.Write(input)
	digest := hh.Sum(nil)
	// As strict as RFC 7518 is, since the fakes of outside services verify
	// with this: an RSA key of at least 2048 bits (§3.3), a PSS salt as
	// long as the hash (§3.5), an ECDSA key on the algorithm's curve and a
	// signature of r and s each padded to the curve's size (§3.4). A
	// lenient verifier would pass a signer's bug a real service refuses.
	switch alg[:2] {
	case "RS", "PS":
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N.BitLen() < MinRSABits {
			return bad
		}
		if alg[:2] == "RS" {
			err := rsa.VerifyPKCS1v15(k, h, digest, sig)
			if err != nil {
				return bad
			}
			return nil
		}
		if rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) != nil {
			return bad
		}
		return nil
	default:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curves[alg] || len(sig) != 2*((k.Curve.Params().BitSize+7)/8) {
			return bad
		}
		n := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(k, digest, r, s) {
			return bad
		}
		return nil
	}
}

// Interface guards.
var (
	_ KeyedSigner = (*pemSigner)(nil)
	_ Signer      = (*transitSigner)(nil)
)

// Interface guards: every Signer New returns signs bytes too.
var (
	_ BytesSigner = (*pemSigner)(nil)
	_ BytesSigner = (*transitSigner)(nil)
)
