package identity

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DefaultMaxTokenBytes is the largest token accepted in
// Proxy-Authorization unless JWTConfig.MaxTokenBytes says otherwise.
const DefaultMaxTokenBytes = 16 << 10

// errNoToken is returned by proxyToken when there is no Proxy-Authorization.
var errNoToken = errors.New("no token")

// proxyToken extracts the token from a Proxy-Authorization value:
// "Bearer <token>", or "Basic base64(user:token)" so that clients that
// only know proxy URLs with credentials (http://workload:<jwt>@proxy:3128)
// can present one. The user name is ignored. Errors never contain the
// header's value.
func proxyToken(header string, maxBytes int) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", errNoToken
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTokenBytes
	}
	// Base64 grows the token by a third; allow for it before decoding.
	if len(header) > maxBytes*4/3+64 {
		return "", fmt.Errorf("the Proxy-Authorization is larger than %d bytes: %w", maxBytes, ErrInvalid)
	}
	scheme, rest, _ := strings.Cut(header, " ")
	rest = strings.TrimSpace(rest)
	var tok string
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		tok = rest
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", fmt.Errorf("the Proxy-Authorization Basic credentials are not valid base64: %w", ErrInvalid)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", fmt.Errorf("the Proxy-Authorization Basic credentials have no ':'; put the token in the password: %w", ErrInvalid)
		}
		if pass == "" && user != "" {
			// http://<token>@proxy: the token in the user name.
			return "", fmt.Errorf("the Proxy-Authorization Basic credentials have a user name and an empty password; put the token in the password (http://token:<token>@proxy): %w", ErrInvalid)
		}
		tok = pass
	default:
		return "", fmt.Errorf("the Proxy-Authorization scheme is neither Bearer nor Basic: %w", ErrInvalid)
	}
	if tok == "" {
		return "", fmt.Errorf("the Proxy-Authorization carries an empty token: %w", ErrInvalid)
	}
	if len(tok) > maxBytes {
		return "", fmt.Errorf("token is larger than %d bytes: %w", maxBytes, ErrInvalid)
	}
	return tok, nil
}

// unverifiedClaims are the claims read from a token before its signature
// is checked, only to choose the verifier. Nothing in them is trusted.
// A claim of another type than expected is left zero.
type unverifiedClaims struct {
	Issuer  string
	Subject string
	Expiry  float64
}

// peekClaims decodes a compact JWS's payload without verifying it. ok is
// false when tok is not shaped like a JWT (three base64url parts whose
// middle one is a JSON object). Claim names are matched exactly, as the
// verifier (go-jose) matches them, not case-insensitively as
// encoding/json's struct fields would; a claim of an unexpected type
// does not make the token someone else's: its issuer's verifier refuses
// it and says why.
func peekClaims(tok string) (c unverifiedClaims, ok bool) {
	first := strings.IndexByte(tok, '.')
	last := strings.LastIndexByte(tok, '.')
	if first < 0 || last == first {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(tok[first+1 : last])
	if err != nil {
		return c, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return c, false
	}
	_ = json.Unmarshal(m["iss"], &c.Issuer)
	_ = json.Unmarshal(m["sub"], &c.Subject)
	_ = json.Unmarshal(m["exp"], &c.Expiry)
	return c, true
}

// tokenKey is the cache key of a token: its SHA-256, so the cache never
// holds the token itself.
type tokenKey [sha256.Size]byte

func keyOf(tok string) tokenKey { return sha256.Sum256([]byte(tok)) }
