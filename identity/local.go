package identity

import (
	"context"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// LocalIssuer is a token issuer inside the gateway process: the tokens
// `credgate run` asks the gateway for (identity/runtoken). The jwt
// factor trusts it without an identity.jwt.issuers entry: a token whose
// iss is IssuerName is verified against VerificationKeys (asked for at
// every verification, so rotation needs nothing else), must carry
// Audience, a jti and an exp, and is refused once Revoked says so — also
// when the factor already verified it (its cache never outlives a
// revocation).
type LocalIssuer interface {
	// IssuerName is the iss claim of the issuer's tokens.
	IssuerName() string
	// Audience is their aud claim.
	Audience() string
	// VerificationKeys are the public keys that may have signed a token
	// not yet expired.
	VerificationKeys() []jose.JSONWebKey
	// Revoked reports whether the token with this jti, whose exp is
	// expires, was revoked; an error (the shared list unreachable)
	// refuses the token as ErrUnavailable. expires lets the issuer
	// remember a revocation it read as long as the token lives.
	Revoked(ctx context.Context, tokenID string, expires time.Time) (bool, error)
}

// WithLocalIssuer makes the jwt factor trust li's tokens (the gateway's
// run_tokens).
func WithLocalIssuer(li LocalIssuer) Option { return func(o *options) { o.local = li } }
