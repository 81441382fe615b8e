package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/api"
)

// TransitSigner signs JWTs with a Vault transit key, so the private key
// never leaves Vault: an OAuth2 private_key_jwt client assertion, a GitHub
// App JWT. It sends the JWS signing input to MOUNT/sign/KEY and assembles
// the compact JWS from the signature. It is safe for concurrent use.
//
// The key's type must match Algorithm: rsa-2048/3072/4096 for RS* and
// PS*, ecdsa-p256/p384/p521 for ES256/ES384/ES512, ed25519 for EdDSA.
type TransitSigner struct {
	// Client is the logged-in Vault client. Required.
	Client *Client
	// Mount is where the transit engine is enabled. Default "transit".
	Mount string
	// Key is the transit key's name. Required.
	Key string
	// Algorithm is the JWS alg: RS256, RS384, RS512, PS256, PS384, PS512,
	// ES256, ES384, ES512 or EdDSA. Required.
	Algorithm string
	// KeyID, if set, is the JWS kid header.
	KeyID string
}

// transitAlgs maps a JWS alg to transit sign parameters.
var transitAlgs = map[string]struct{ hash, sig string }{
	"RS256": {"sha2-256", "pkcs1v15"}, "RS384": {"sha2-384", "pkcs1v15"}, "RS512": {"sha2-512", "pkcs1v15"},
	"PS256": {"sha2-256", "pss"}, "PS384": {"sha2-384", "pss"}, "PS512": {"sha2-512", "pss"},
	"ES256": {"sha2-256", ""}, "ES384": {"sha2-384", ""}, "ES512": {"sha2-512", ""},
	"EdDSA": {"", ""},
}

// SignJWT returns a compact JWS over claims (marshalled as JSON) with
// header {"alg": Algorithm, "typ": "JWT", "kid": KeyID}. Errors start with
// "vault: sign with transit key MOUNT/KEY"; an unavailable Vault wraps
// providers.ErrUnavailable.
func (s *TransitSigner) SignJWT(ctx context.Context, claims any) (string, error) {
	return s.SignJWTWithHeader(ctx, nil, claims)
}

// SignJWTWithHeader is SignJWT with extra JWS header parameters (x5t#S256,
// say). header may not set alg, which is always Algorithm; typ defaults to
// "JWT" and kid to KeyID.
func (s *TransitSigner) SignJWTWithHeader(ctx context.Context, header map[string]any, claims any) (string, error) {
	mount, op, alg, err := s.prepare()
	if err != nil {
		return "", err
	}
	if _, ok := header["alg"]; ok {
		return "", fmt.Errorf("vault: %s: the header may not set alg; set Algorithm", op)
	}
	hdr := map[string]any{"alg": s.Algorithm, "typ": "JWT"}
	if s.KeyID != "" {
		hdr["kid"] = s.KeyID
	}
	for k, v := range header {
		hdr[k] = v
	}
	hj, err := json.Marshal(hdr)
	if err != nil {
		return "", fmt.Errorf("vault: %s: header: %w", op, err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("vault: %s: claims: %w", op, err)
	}
	input := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	raw, err := s.sign(ctx, mount, op, alg.hash, alg.sig, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(raw), nil
}

// SignBytes signs input with the transit key under Algorithm and returns
// the signature as a JWS carries it (r || s for ECDSA, PSS with a salt as
// long as the hash): what an HTTP Message Signature (RFC 9421) over a
// signature base needs. Errors are those of SignJWT.
func (s *TransitSigner) SignBytes(ctx context.Context, input []byte) ([]byte, error) {
	mount, op, alg, err := s.prepare()
	if err != nil {
		return nil, err
	}
	return s.sign(ctx, mount, op, alg.hash, alg.sig, input)
}

// prepare checks the settings and returns the mount, the operation
// named in errors and the transit parameters of Algorithm.
func (s *TransitSigner) prepare() (mount, op string, alg struct{ hash, sig string }, err error) {
	mount = strings.Trim(s.Mount, "/")
	if mount == "" {
		mount = "transit"
	}
	op = fmt.Sprintf("sign with transit key %s/%s", mount, s.Key)
	alg, ok := transitAlgs[s.Algorithm]
	switch {
	case s.Client == nil:
		err = fmt.Errorf("vault: %s: TransitSigner has no Client", op)
	case s.Key == "" || strings.ContainsAny(s.Key, "/?#") || strings.Contains(mount, ".."):
		err = fmt.Errorf("vault: %s: the key must be a plain key name", op)
	case !ok:
		err = fmt.Errorf("vault: %s: unsupported JWS algorithm %q (use RS256, PS256, ES256, EdDSA, ...)", op, s.Algorithm)
	}
	return mount, op, alg, err
}

// sign sends input to MOUNT/sign/KEY and decodes the signature.
func (s *TransitSigner) sign(ctx context.Context, mount, op, hash, sig string, input []byte) ([]byte, error) {
	body := map[string]any{
		"input":                base64.StdEncoding.EncodeToString(input),
		"marshaling_algorithm": "jws",
	}
	if hash != "" {
		body["hash_algorithm"] = hash
	}
	if sig != "" {
		body["signature_algorithm"] = sig
	}
	if sig == "pss" {
		body["salt_length"] = "hash" // RFC 7518 3.5: salt as long as the hash
	}
	path := mount + "/sign/" + s.Key
	sec, err := s.Client.do(ctx, op, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Logical().WriteWithContext(ctx, path, body)
	})
	if err != nil {
		return nil, err
	}
	var out string
	if sec != nil {
		out, _ = sec.Data["signature"].(string)
	}
	raw, err := transitSignature(out)
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	return raw, nil
}

// transitSignature decodes "vault:vN:SIG". With marshaling_algorithm jws,
// SIG is base64url without padding; older servers answer standard base64
// for RSA keys, which is accepted too.
func transitSignature(s string) ([]byte, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		return nil, errors.New(`the answer has no signature of the form "vault:vN:..."`)
	}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(parts[2]); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, errors.New("the signature is not base64")
}
