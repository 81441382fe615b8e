package oauth2

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
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/vault"
)

// algorithms are the JWS algorithms assertions can be signed with.
var algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// signer signs assertion claims into a compact JWS.
type signer interface {
	sign(ctx context.Context, req providers.Request, claims map[string]any) (string, error)
}

// assertion builds and signs a JWT for client authentication
// (private_key_jwt) or the jwt_bearer grant: iss, sub, aud, iat, exp, a
// random jti, and extra claims.
func (p *Provider) assertion(ctx context.Context, req providers.Request, iss, sub string, claims map[string]any) (string, error) {
	if p.signer == nil {
		return "", errors.New("no client_key is configured")
	}
	if claims == nil {
		claims = map[string]any{}
	}
	aud := p.AssertionAudience
	if aud == "" {
		aud = p.TokenURL
	}
	now := p.now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims["iss"] = iss
	claims["sub"] = sub
	claims["aud"] = aud
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(p.AssertionLifetime).Unix()
	claims["jti"] = base64.RawURLEncoding.EncodeToString(jti)
	return p.signer.sign(ctx, req, claims)
}

// pemSigner signs with a PEM private key read from a file or another
// credential at every signing (assertions are made only when a token is
// fetched, so a rotated key is picked up at the next refresh).
type pemSigner struct {
	src   KeySource
	input func(ctx context.Context, req providers.Request, name string, fields ...string) (providers.Secret, error)
}

func (s *pemSigner) sign(ctx context.Context, req providers.Request, claims map[string]any) (string, error) {
	var pemData []byte
	var where string
	if s.src.File != "" {
		where = "client_key.file " + s.src.File
		b, err := os.ReadFile(s.src.File)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", where, errors.Unwrap(err))
		}
		pemData = b
	} else {
		where = fmt.Sprintf("client_key.credential %q", s.src.Credential)
		fields := []string{providers.FieldPrivateKey, providers.FieldToken}
		if s.src.Field != "" {
			fields = []string{s.src.Field}
		}
		sec, err := s.input(ctx, req, s.src.Credential, fields...)
		if err != nil {
			return "", err
		}
		pemData = []byte(sec.Reveal())
	}
	key, err := parseKey(pemData)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	alg := s.src.Algorithm
	if alg == "" {
		alg = defaultAlgorithm(key)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.src.KeyID != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.src.KeyID)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("%s: cannot sign %s with this key: %w", where, alg, err)
	}
	out, err := jwt.Signed(sg).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("%s: sign: %w", where, err)
	}
	return out, nil
}

// parseKey parses a PEM private key: PKCS#8, PKCS#1 RSA or SEC 1 EC. The
// error never contains key material.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		if !strings.Contains(b.Type, "PRIVATE KEY") {
			continue
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

// defaultAlgorithm picks the JWS alg for a key.
func defaultAlgorithm(k crypto.Signer) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return "RS256"
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
		return "ES256"
	case ed25519.PrivateKey:
		return "EdDSA"
	}
	return "RS256"
}

// transitSigner signs with a Vault transit key.
type transitSigner struct {
	ts     *vault.TransitSigner
	client *vault.Client
}

func (s *transitSigner) sign(ctx context.Context, _ providers.Request, claims map[string]any) (string, error) {
	return s.ts.SignJWT(ctx, claims)
}
