package oauth2

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"

	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
)

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
	return p.signer.Sign(jwtsign.WithRequest(ctx, req), nil, claims)
}
