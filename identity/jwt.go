package identity

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// jwtVerifier produces the jwt factor from a token in Proxy-Authorization,
// verified by the configured issuer its iss claim names.
type jwtVerifier struct {
	issuers  []*issuer
	skew     time.Duration
	maxBytes int
	now      func() time.Time
	log      *slog.Logger
	cache    *ttlCache[tokenKey, verifiedToken]
	stop     []func() error
}

// verifiedToken is a cached verification: the factor, the issuer and the
// key that verified it, whose presence in the issuer's key set is checked
// at every use, and for a token of the local issuer its jti, whose
// revocation is checked at every use too.
type verifiedToken struct {
	f     *Factor
	is    *issuer
	key   crypto.PublicKey
	local LocalIssuer
	jti   string
}

// issuer is one configured token issuer.
type issuer struct {
	cfg     IssuerConfig
	algs    []jose.SignatureAlgorithm
	keys    *keySet
	profile profile
	td      spiffeid.TrustDomain // spiffe profile
	// local is set for the gateway's own issuer (run tokens).
	local LocalIssuer
}

func newJWTVerifier(ctx context.Context, cfg JWTConfig, o options) (*jwtVerifier, error) {
	v := &jwtVerifier{skew: cfg.ClockSkew, maxBytes: cfg.MaxTokenBytes, now: o.now, log: o.log,
		cache: newTTLCache[tokenKey, verifiedToken](cfg.CacheSize)}
	if li := o.local; li != nil {
		ic := IssuerConfig{Issuer: li.IssuerName(), Profile: ProfileOIDC, Audiences: []string{li.Audience()}, Algorithms: []string{"ES256", "EdDSA"}}
		v.issuers = append(v.issuers, &issuer{cfg: ic, algs: []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA},
			keys: &keySet{issuer: ic.Issuer, cfg: ic, now: o.now, log: o.log, local: li.VerificationKeys}, profile: profiles[ProfileOIDC], local: li})
	}
	for _, ic := range cfg.Issuers {
		is := &issuer{cfg: ic, profile: profiles[ic.Profile]}
		for _, a := range ic.Algorithms {
			is.algs = append(is.algs, jose.SignatureAlgorithm(a))
		}
		if ic.TrustDomain != "" {
			td, err := spiffeid.TrustDomainFromString(ic.TrustDomain)
			if err != nil {
				return nil, fmt.Errorf("identity: jwt: trust domain %q: %w", ic.TrustDomain, err)
			}
			is.td = td
		}
		ks, err := newKeySet(ctx, ic, o)
		if err != nil {
			_ = v.Close()
			return nil, fmt.Errorf("identity: jwt: issuer %s: %w", issuerName(ic), err)
		}
		is.keys = ks
		v.issuers = append(v.issuers, is)
		v.stop = append(v.stop, background(ks.run))
	}
	return v, nil
}

func issuerName(ic IssuerConfig) string {
	if ic.Issuer != "" {
		return ic.Issuer
	}
	return "spiffe://" + ic.TrustDomain
}

// Kind implements Verifier.
func (v *jwtVerifier) Kind() string { return KindJWT }

// ReadsProxyAuthorization implements ProxyAuthorizationReader.
func (v *jwtVerifier) ReadsProxyAuthorization() {}

// claims reports whether a token with these unverified claims is for one
// of v's issuers.
func (v *jwtVerifier) claims(c unverifiedClaims) bool { return v.issuerFor(c) != nil }

// issuerFor picks the issuer of a token from its unverified claims: the
// one whose issuer equals iss, or for JWT-SVIDs without iss, the spiffe
// issuer whose trust domain the sub names.
func (v *jwtVerifier) issuerFor(c unverifiedClaims) *issuer {
	for _, is := range v.issuers {
		if is.cfg.Issuer != "" && is.cfg.Issuer == c.Issuer {
			return is
		}
	}
	if c.Issuer == "" {
		for _, is := range v.issuers {
			if is.cfg.Issuer == "" && !is.td.IsZero() && strings.HasPrefix(c.Subject, is.td.IDString()+"/") {
				return is
			}
		}
	}
	return nil
}

// Verify implements Verifier. A token that is not a JWT, or whose issuer
// is not configured, is not this verifier's (nil, nil); the Resolver
// refuses it unless another verifier accepts it.
func (v *jwtVerifier) Verify(ctx context.Context, ev Evidence) (*Factor, error) {
	tok, err := proxyToken(ev.ProxyAuthorization, v.maxBytes)
	if errors.Is(err, errNoToken) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A token in the cache was verified by one of v's issuers: serve it
	// without parsing it again.
	now := v.now()
	key := keyOf(tok)
	// A cached verification stands only while the key that made it is
	// still one of its issuer's keys: an issuer that removes a key (it
	// leaked, or was rotated out) refuses every token it signed, not only
	// the ones the gateway has not seen yet, whatever exp they carry.
	if c, ok := v.cache.get(key, now); ok && c.f != nil && c.is.keys.holds(c.key) {
		if c.local != nil {
			if err := checkRevoked(ctx, c.local, c.jti, c.f.Expires); err != nil {
				return nil, err
			}
		}
		return c.f, nil
	}
	uc, ok := peekClaims(tok)
	if !ok {
		return nil, nil
	}
	is := v.issuerFor(uc)
	if is == nil {
		return nil, nil
	}
	vt, err := v.verify(ctx, is, tok, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(key, vt, vt.f.Expires, now)
	return vt.f, nil
}

// tokenClaims are the claims read from a verified token besides the
// registered ones.
type tokenClaims struct {
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
	Confirmation *struct {
		X5tS256 string `json:"x5t#S256"`
	} `json:"cnf"`
}

// checkRevoked refuses a token of the local issuer that was revoked.
func checkRevoked(ctx context.Context, li LocalIssuer, jti string, expires time.Time) error {
	revoked, err := li.Revoked(ctx, jti, expires)
	if err != nil {
		return fmt.Errorf("issuer %s: cannot read the revocation list: %v: %w", li.IssuerName(), err, ErrUnavailable)
	}
	if revoked {
		return fmt.Errorf("issuer %s: token was revoked (credgate run revokes its token when its command exits): %w", li.IssuerName(), ErrInvalid)
	}
	return nil
}

// verify checks tok with is and returns its factor, the key that verified
// it and its jti.
func (v *jwtVerifier) verify(ctx context.Context, is *issuer, tok string, now time.Time) (verifiedToken, error) {
	name := issuerName(is.cfg)
	parsed, err := jwt.ParseSigned(tok, is.algs)
	if err != nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: token is not a compact JWS signed with an allowed algorithm (%s): %w", name, strings.Join(is.cfg.Algorithms, ", "), ErrInvalid)
	}
	if len(parsed.Headers) != 1 {
		return verifiedToken{}, fmt.Errorf("issuer %s: token must carry exactly one signature: %w", name, ErrInvalid)
	}
	h := parsed.Headers[0]
	if err := checkHeader(h); err != nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: %w", name, err)
	}
	keys, err := is.keys.candidates(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		return verifiedToken{}, err
	}
	if len(keys) > maxCandidateKeys {
		// Each candidate costs a signature check, and a refused token
		// is not remembered: a token without a kid (or with one many
		// keys share) would make the gateway try every key of a large
		// key set, for every forged token a client sends.
		return verifiedToken{}, fmt.Errorf("issuer %s: token's key id %s matches %d of the issuer's %s keys, more than the %d tried per token; have the issuer name its signing key in the kid header: %w", name, quoteShort(h.KeyID), len(keys), h.Algorithm, maxCandidateKeys, ErrInvalid)
	}
	var (
		std   jwt.Claims
		extra tokenClaims
		raw   map[string]any
		used  crypto.PublicKey
	)
	// The signature first, then the claims: a token signed by the
	// issuer whose claims do not decode (an exp that is not a number of
	// seconds, an aud that is no string) is refused for its claims, not
	// taken for a forgery.
	for _, k := range keys {
		if err := parsed.Claims(k.Key); err == nil {
			used = k.Key
			break
		}
	}
	if used == nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: token signature does not verify with the issuer's key %s: %w", name, quoteShort(h.KeyID), ErrInvalid)
	}
	// The payload is the one the signature covers (a compact JWS with
	// one signature, verified just above).
	if err := parsed.UnsafeClaimsWithoutVerification(&std, &extra, &raw); err != nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: token claims do not decode (exp, nbf and iat must be numbers of seconds within range, iss and sub strings, aud a string or a list of strings, kubernetes.io and cnf objects): %w", name, ErrInvalid)
	}
	if std.Expiry == nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: token has no exp claim; only expiring tokens are accepted: %w", name, ErrInvalid)
	}
	exp := jwt.Expected{Issuer: is.cfg.Issuer, AnyAudience: is.cfg.Audiences, Time: now}
	if err := std.ValidateWithLeeway(exp, v.skew); err != nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: %s: %w", name, claimProblem(err, is.cfg), ErrInvalid)
	}
	// A token whose nbf or iat is after its exp is valid at no instant;
	// the leeway could otherwise admit it (an issuer's bug, or claims
	// crafted to meet every check at once).
	if std.NotBefore != nil && std.NotBefore.Time().After(std.Expiry.Time()) {
		return verifiedToken{}, fmt.Errorf("issuer %s: token is valid at no time (nbf is after exp): %w", name, ErrInvalid)
	}
	if std.IssuedAt != nil && std.IssuedAt.Time().After(std.Expiry.Time()) {
		return verifiedToken{}, fmt.Errorf("issuer %s: token is valid at no time (iat is after exp): %w", name, ErrInvalid)
	}
	if maxLife := is.cfg.MaxLifetime; maxLife > 0 {
		from := now
		if std.IssuedAt != nil {
			from = std.IssuedAt.Time()
		}
		if life := std.Expiry.Time().Sub(from); life > maxLife+v.skew {
			return verifiedToken{}, fmt.Errorf("issuer %s: token is valid for %s, longer than the issuer's max_lifetime %s; have the issuer mint shorter-lived tokens, or raise max_lifetime: %w", name, life.Round(time.Second), maxLife, ErrInvalid)
		}
	}
	if is.local != nil {
		if std.ID == "" {
			return verifiedToken{}, fmt.Errorf("issuer %s: token has no jti claim: %w", name, ErrInvalid)
		}
		if err := checkRevoked(ctx, is.local, std.ID, std.Expiry.Time()); err != nil {
			return verifiedToken{}, err
		}
	}
	f := &Factor{Kind: KindJWT, Subject: std.Subject, Expires: std.Expiry.Time(), Token: NewToken(tok), Attributes: map[string]string{
		AttrIssuer: std.Issuer,
		AttrSub:    std.Subject,
	}}
	if is.local != nil {
		// A run token identifies the workload it was issued for, or none.
		f.IssuedFor = std.Subject
	}
	if extra.Confirmation != nil && extra.Confirmation.X5tS256 != "" {
		f.Attributes[AttrTokenCertThumbprint] = extra.Confirmation.X5tS256
	}
	if err := is.profile.apply(is, std, extra, raw, f); err != nil {
		return verifiedToken{}, fmt.Errorf("issuer %s: %w", name, err)
	}
	for claim, attr := range is.cfg.Claims {
		if s, ok := claimString(raw[claim]); ok {
			if _, set := f.Attributes[attr]; !set {
				f.Attributes[attr] = s
			}
		}
	}
	return verifiedToken{f: f, is: is, key: used, local: is.local, jti: std.ID}, nil
}

// maxCandidateKeys is the most keys of an issuer's key set one token's
// signature is checked against: those its kid names (every key, for a
// token without one) that are usable with its alg.
const maxCandidateKeys = 16

// jwsExtensions are the JWS header parameters that change how a token is
// verified and that no JWT uses (RFC 7515 4.1.11 crit, RFC 7797 b64).
var jwsExtensions = []jose.HeaderKey{"crit", "b64"}

// checkHeader refuses a token whose protected header carries a JWS
// extension. go-jose honours "b64": false (with "crit": ["b64"]): the
// signature then covers the payload bytes unencoded, which is what a
// detached or unencoded-payload JWS (RFC 7797) signs, so a signature the
// issuer's key made over some other JSON document would verify as a
// token. A JWT's payload is always base64url-encoded (RFC 7519 7.1) and
// it has no critical extensions; any other "crit" was refused as a bad
// signature, which it is not. Keys named in the header (jwk, jku, x5u,
// x5c) are never used: only the issuer's key set verifies.
func checkHeader(h jose.Header) error {
	for _, k := range jwsExtensions {
		if _, ok := h.ExtraHeaders[k]; ok {
			return fmt.Errorf("token header carries %q, a JWS extension no JWT uses (a JWT has no critical header parameters and a base64url-encoded payload); have the issuer sign a plain JWT: %w", string(k), ErrInvalid)
		}
	}
	return nil
}

// claimProblem words a go-jose validation error.
func claimProblem(err error, cfg IssuerConfig) string {
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return "token has expired"
	case errors.Is(err, jwt.ErrNotValidYet):
		return "token is not valid yet (nbf is in the future)"
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "token was issued in the future (iat)"
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Sprintf("token audience is none of %s", strings.Join(cfg.Audiences, ", "))
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "token issuer does not match"
	}
	return "token claims are invalid"
}

// claimString formats a string, number or boolean claim.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// Close stops the key refreshers.
func (v *jwtVerifier) Close() error {
	var errs []error
	for _, s := range v.stop {
		errs = append(errs, s())
	}
	v.stop = nil
	return errors.Join(errs...)
}

// profile maps a verified token's claims to attributes.
type profile struct {
	// attrs are the attributes the profile sets (Claims may not map
	// onto them).
	attrs []string
	apply func(is *issuer, std jwt.Claims, extra tokenClaims, raw map[string]any, f *Factor) error
}

var profiles = map[string]profile{
	ProfileOIDC: {apply: func(*issuer, jwt.Claims, tokenClaims, map[string]any, *Factor) error { return nil }},
	ProfileKubernetes: {
		attrs: []string{AttrNamespace, AttrServiceAccount, AttrPod},
		apply: func(_ *issuer, std jwt.Claims, extra tokenClaims, _ map[string]any, f *Factor) error {
			k := extra.Kubernetes
			if k == nil || k.Namespace == "" || k.ServiceAccount.Name == "" {
				return fmt.Errorf("token is not a Kubernetes service-account token (no kubernetes.io namespace and service account): %w", ErrInvalid)
			}
			if want := "system:serviceaccount:" + k.Namespace + ":" + k.ServiceAccount.Name; std.Subject != want {
				return fmt.Errorf("token subject does not name the service account of its kubernetes.io claim: %w", ErrInvalid)
			}
			f.Attributes[AttrNamespace] = k.Namespace
			f.Attributes[AttrServiceAccount] = k.ServiceAccount.Name
			if k.Pod != nil && k.Pod.Name != "" {
				f.Attributes[AttrPod] = k.Pod.Name
			}
			return nil
		},
	},
	ProfileSPIFFE: {
		attrs: []string{AttrSPIFFEID, AttrTrustDomain, AttrPath},
		apply: func(is *issuer, std jwt.Claims, _ tokenClaims, _ map[string]any, f *Factor) error {
			id, err := spiffeid.FromString(std.Subject)
			if err != nil || id.Path() == "" {
				return fmt.Errorf("JWT-SVID subject is not a SPIFFE ID of a workload: %w", ErrInvalid)
			}
			if !id.MemberOf(is.td) {
				return fmt.Errorf("JWT-SVID subject %s is not of trust domain %s: %w", id, is.td.Name(), ErrInvalid)
			}
			f.Subject = id.String()
			f.Attributes[AttrSPIFFEID] = id.String()
			f.Attributes[AttrTrustDomain] = id.TrustDomain().Name()
			f.Attributes[AttrPath] = id.Path()
			return nil
		},
	},
	ProfileGitHubActions: {
		attrs: githubAttrs,
		apply: func(_ *issuer, _ jwt.Claims, _ tokenClaims, raw map[string]any, f *Factor) error {
			for _, a := range githubAttrs {
				if s, ok := raw[a].(string); ok && s != "" {
					f.Attributes[a] = s
				}
			}
			if f.Attributes["repository"] == "" {
				return fmt.Errorf("token is not a GitHub Actions token (no repository claim): %w", ErrInvalid)
			}
			return nil
		},
	},
}

// githubAttrs are the GitHub Actions claims mapped one to one.
var githubAttrs = []string{"repository", "repository_owner", "ref", "workflow", "job_workflow_ref", "environment"}

var _ ProxyAuthorizationReader = (*jwtVerifier)(nil)
