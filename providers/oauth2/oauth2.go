// Package oauth2 is the "oauth2" credential provider: it obtains OAuth2
// access tokens from an authorization server's token endpoint, on
// golang.org/x/oauth2 (clientcredentials), so that the client secret or
// signing key lives in one place and applications never see a token
// endpoint. The credential has providers.FieldToken (the access token,
// for the bearer injector) and "token_type".
//
// # Grants
//
//   - client_credentials (RFC 6749 §4.4), the default;
//   - token_exchange (RFC 8693): the calling workload's own verified JWT
//     (identity.Factor.Token of its jwt or kubernetes factor) is sent as
//     subject_token, so the API receives a token for that workload. Tokens
//     are cached per workload and per subject token;
//   - jwt_bearer (RFC 7523 §2.1): the gateway builds and signs an
//     assertion (iss, sub, aud, iat, exp, jti and extra claims) and
//     exchanges it, e.g. Google service accounts, Salesforce JWT bearer.
//
// # Client authentication (client_auth)
//
//   - client_secret_basic (default when a client secret is set): HTTP
//     Basic with the form-encoded client_id and secret (RFC 6749 §2.3.1);
//   - client_secret_post: client_id and client_secret in the form;
//   - private_key_jwt (RFC 7523 §2.2, OIDC Core §9): a client assertion
//     signed with client_key, a PEM key from a file, from another
//     credential, or a Vault transit key that never leaves Vault;
//   - none: client_id only (if set), the default of jwt_bearer.
//
// The client secret comes from another credential of the policy (Vault
// KV, static), named in client_secret.credential. client_secret.value
// holds it inline, which is for development only: a policy file is not a
// secret store.
//
// # Settings
//
//	provider: oauth2
//	token_url: https://auth.example.com/oauth2/token
//	grant: client_credentials        # client_credentials | token_exchange | jwt_bearer
//	client_id: credgate
//	client_auth: client_secret_basic # client_secret_basic | client_secret_post | private_key_jwt | none
//	client_secret: {credential: saas-client-secret}   # field: token by default
//	client_key:                      # private_key_jwt, and the jwt_bearer assertion
//	  file: /run/secrets/oauth-key.pem   # or credential: NAME, or transit: {server, mount, key}
//	  algorithm: RS256               # default from the key: RS256, ES256, ES384, EdDSA
//	  key_id: k1
//	scopes: [read, write]
//	audience: https://api.example.com
//	resource: [https://api.example.com/]   # RFC 8707
//	params: {tenant: acme}           # extra form parameters
//	default_expires_in: 5m           # when the answer has no expires_in
//	retries: 2                       # extra attempts on 5xx, 429, timeouts
//	timeout: 10s                     # each attempt
//
// # Expiry and refresh
//
// A token expires expires_in after it was requested, less a margin of 10%
// (at most expiry_margin, default 10s) for clock skew and transit time;
// the gateway's cache refreshes it in the background before that, so
// requests keep using the cached token while a new one is fetched. An
// answer without expires_in gets default_expires_in.
//
// # Failures
//
// A token endpoint that is unreachable, times out, or answers 5xx or 429
// is retried (retries, jittered exponential backoff) and then the error
// wraps providers.ErrUnavailable, so the gateway answers 503 with
// Retry-After and caches the error only for its backoff. A 4xx (wrong
// client, grant not allowed) is a plain error (502). Errors name the
// operation, the token URL (without query) and the OAuth2 error code; they
// never contain a secret, token, assertion or the server's description
// (which may echo parameters).
//
// When an upstream answers 401 to a request that carried a cached token,
// the gateway drops the token and retries an idempotent request once with
// a new one (providers.Reissuer).
package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
)

func init() {
	providers.Register(providers.Module{
		Name: "oauth2",
		Doc:  "OAuth2 access tokens: client credentials, private_key_jwt, token exchange, JWT bearer",
		SettingDocs: map[string]string{
			"token_url":          "the authorization server's token endpoint",
			"grant":              "client_credentials (default), token_exchange or jwt_bearer",
			"client_id":          "the OAuth2 client's ID",
			"client_auth":        "client_secret_basic, client_secret_post, private_key_jwt or none",
			"client_secret":      "where the client secret comes from",
			"client_key":         "the signing key of private_key_jwt and jwt_bearer assertions (providers/jwtsign)",
			"assertion_audience": "the aud of client and jwt_bearer assertions",
			"assertion_lifetime": "how long an assertion is valid",
			"scopes":             "requested as the space-separated scope parameter",
			"audience":           "the audience parameter (token exchange; Auth0, Okta, Hydra client credentials)",
			"resource":           "RFC 8707 resource indicators (absolute URIs)",
			"params":             "extra form parameters of the token request",
			"token_exchange":     "settings of the token_exchange grant",
			"jwt_bearer":         "settings of the jwt_bearer grant",
			"default_expires_in": "the lifetime of a token whose answer has no expires_in",
			"expiry_margin":      "the most a token's lifetime is shortened by",
			"retries":            "how often a request failing with 5xx, 429, a timeout or a connection error is retried",
			"retry_backoff":      "the wait before the first retry; it doubles, with jitter",
			"timeout":            "bound on each token request",
			"ca_cert":            "PEM roots for the token endpoint instead of the system roots",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Grant types (the grant setting).
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "token_exchange"
	GrantJWTBearer         = "jwt_bearer"
)

// Client authentication methods (the client_auth setting), named as in
// the OAuth2 dynamic client registration registry.
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	AuthPrivateKey  = "private_key_jwt"
	AuthNone        = "none"
)

// Wire values.
const (
	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantTypeJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	assertionTypeJWT       = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// TokenTypeJWT is the default subject_token_type of token exchange.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// FieldTokenType is the credential field holding the token_type the
// endpoint answered (e.g. "bearer").
const FieldTokenType = "token_type"

// Defaults, applied by Provision.
const (
	DefaultExpiresIn         = 5 * time.Minute
	DefaultExpiryMargin      = 10 * time.Second
	DefaultRetries           = 2
	DefaultRetryBackoff      = 200 * time.Millisecond
	DefaultTimeout           = 10 * time.Second
	DefaultAssertionLifetime = 2 * time.Minute
	maxRetryBackoff          = 2 * time.Second
)

// Provider is the "oauth2" provider. Its exported fields are its settings;
// see the package documentation.
type Provider struct {
	// TokenURL is the authorization server's token endpoint. Required.
	TokenURL string `yaml:"token_url"`
	// Grant is client_credentials (default), token_exchange or jwt_bearer.
	Grant string `yaml:"grant"`
	// ClientID is the OAuth2 client's ID. Required unless client_auth is
	// none.
	ClientID string `yaml:"client_id"`
	// ClientAuth is how the client authenticates at the token endpoint:
	// client_secret_basic, client_secret_post, private_key_jwt or none.
	// Default: client_secret_basic when a client secret is set,
	// private_key_jwt when only client_key is set (client_credentials),
	// else none.
	ClientAuth string `yaml:"client_auth"`
	// ClientSecret is where the client secret comes from.
	ClientSecret SecretSource `yaml:"client_secret"`
	// ClientKey is the signing key of private_key_jwt client assertions
	// and of jwt_bearer assertions.
	ClientKey KeySource `yaml:"client_key"`
	// AssertionAudience is the aud of client and jwt_bearer assertions.
	// Default: the token URL.
	AssertionAudience string `yaml:"assertion_audience"`
	// AssertionLifetime is how long an assertion is valid. Default 2m.
	AssertionLifetime time.Duration `yaml:"assertion_lifetime"`
	// Scopes are requested as the space-separated scope parameter.
	Scopes []string `yaml:"scopes"`
	// Audience is the audience parameter (token exchange, and many
	// providers' client credentials: Auth0, Okta, Hydra).
	Audience string `yaml:"audience"`
	// Resource are RFC 8707 resource indicators (absolute URIs).
	Resource []string `yaml:"resource"`
	// Params are extra form parameters of the token request. They may not
	// override the ones the provider sets.
	Params map[string]string `yaml:"params"`
	// TokenExchange configures the token_exchange grant.
	TokenExchange TokenExchange `yaml:"token_exchange"`
	// JWTBearer configures the jwt_bearer grant.
	JWTBearer JWTBearer `yaml:"jwt_bearer"`
	// DefaultExpiresIn is the lifetime of a token whose answer has no
	// expires_in. Default 5m.
	DefaultExpiresIn time.Duration `yaml:"default_expires_in"`
	// ExpiryMargin is the most a token's lifetime is shortened by (it is
	// shortened by 10% of expires_in, at most this). Default 10s.
	ExpiryMargin time.Duration `yaml:"expiry_margin"`
	// Retries is how many times a token request that failed with a 5xx,
	// 429, timeout or connection error is tried again. Default 2; 0
	// disables retries.
	Retries *int `yaml:"retries"`
	// RetryBackoff is the wait before the first retry; it doubles with
	// every further one (at most 2s), with random jitter. Default 200ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// Timeout bounds each token request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// CACert is a PEM file of roots for the token endpoint's TLS
	// certificate, instead of the system roots.
	CACert string `yaml:"ca_cert"`

	// runtime state, set by Provision and SetInputs.
	auth    string
	retries int
	client  *http.Client
	signer  jwtsign.Signer
	inputs  providers.InputSet
	scope   string // the CacheScope part common to every caller
	opLabel string // "token request to URL (grant G, client C)"
	now     func() time.Time
}

// SecretSource says where a secret comes from: another credential of the
// policy (production), or an inline value (development only).
type SecretSource struct {
	// Credential names another credential of the policy (vault, static)
	// whose field holds the secret.
	Credential string `yaml:"credential"`
	// Field is the field of that credential. Default "token".
	Field string `yaml:"field"`
	// Value is the secret inline, for development only: a policy file is
	// not a secret store.
	Value InlineSecret `yaml:"value"`
}

func (s SecretSource) set() bool { return s.Credential != "" || !s.Value.IsZero() }

// InlineSecret is a secret written in the policy (development only). It
// decodes from a YAML string and, like providers.Secret, prints as
// [REDACTED] in every form.
type InlineSecret struct{ providers.Secret }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *InlineSecret) UnmarshalYAML(n *yaml.Node) error {
	var v string
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("line %d: client_secret.value must be a string", n.Line)
	}
	s.Secret = providers.NewSecret(v)
	return nil
}

// KeySource says where a signing key comes from: a PEM file, another
// credential, or a Vault transit key (the shared providers/jwtsign
// settings).
type KeySource = jwtsign.KeySource

// Transit is a Vault transit key used to sign assertions.
type Transit = jwtsign.Transit

// TokenExchange configures the token_exchange grant (RFC 8693).
type TokenExchange struct {
	// SubjectFactor is the kind of the workload's verified factor whose
	// token is the subject_token: jwt or kubernetes. Default: the first
	// verified factor that carries a token.
	SubjectFactor string `yaml:"subject_factor"`
	// SubjectTokenType is the subject_token_type. Default
	// urn:ietf:params:oauth:token-type:jwt.
	SubjectTokenType string `yaml:"subject_token_type"`
	// RequestedTokenType is the requested_token_type, if set.
	RequestedTokenType string `yaml:"requested_token_type"`
}

// JWTBearer configures the jwt_bearer grant (RFC 7523 §2.1). The
// assertion is signed with client_key.
type JWTBearer struct {
	// Issuer is the assertion's iss (a service account's email, a
	// connected app's consumer key). Required.
	Issuer string `yaml:"issuer"`
	// Subject is the sub (the user or service account acted for).
	// Default: Issuer.
	Subject string `yaml:"subject"`
	// Claims are extra claims (Google's scope, for example). They may not
	// override iss, sub, aud, iat, exp or jti.
	Claims map[string]any `yaml:"claims"`
}

// Provision applies defaults and prepares the HTTP client and the signer.
// It contacts nothing.
func (p *Provider) Provision(context.Context) error {
	if p.Grant == "" {
		p.Grant = GrantClientCredentials
	}
	p.auth = p.ClientAuth
	if p.auth == "" {
		switch {
		case p.ClientSecret.set():
			p.auth = AuthSecretBasic
		case p.ClientKey.IsSet() && p.Grant != GrantJWTBearer:
			p.auth = AuthPrivateKey
		default:
			p.auth = AuthNone
		}
	}
	if p.DefaultExpiresIn <= 0 {
		p.DefaultExpiresIn = DefaultExpiresIn
	}
	if p.ExpiryMargin <= 0 {
		p.ExpiryMargin = DefaultExpiryMargin
	}
	p.retries = DefaultRetries
	if p.Retries != nil {
		p.retries = max(*p.Retries, 0)
	}
	if p.RetryBackoff <= 0 {
		p.RetryBackoff = DefaultRetryBackoff
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.AssertionLifetime <= 0 {
		p.AssertionLifetime = DefaultAssertionLifetime
	}
	if p.TokenExchange.SubjectTokenType == "" {
		p.TokenExchange.SubjectTokenType = TokenTypeJWT
	}
	if p.JWTBearer.Subject == "" {
		p.JWTBearer.Subject = p.JWTBearer.Issuer
	}
	if p.now == nil {
		p.now = time.Now
	}
	// Never through HTTPS_PROXY (the request carries the client secret),
	// and no redirect: a token endpoint that redirects is misconfigured,
	// and following it would send the client secret elsewhere.
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	p.client = c
	if p.ClientKey.IsSet() {
		sg, err := jwtsign.New(p.ClientKey, "client_key", jwtsign.FromInputs(p.inputs.Map))
		if err != nil {
			return fmt.Errorf("oauth2: %w", err)
		}
		p.signer = sg
	}
	p.opLabel = fmt.Sprintf("token request to %s (grant %s, client %s)", httpclient.Display(p.TokenURL), p.Grant, orNone(p.ClientID))
	p.scope = p.scopeBase().String()
	return nil
}

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	if p.TokenURL == "" {
		return errors.New("oauth2: set token_url (the authorization server's token endpoint)")
	}
	// The token request carries the client secret or a signed assertion:
	// https, or plain http to loopback only.
	if err := httpclient.CheckURL(p.TokenURL); err != nil {
		return fmt.Errorf("oauth2: token_url %w", err)
	}
	switch p.Grant {
	case GrantClientCredentials, GrantTokenExchange, GrantJWTBearer:
	default:
		return fmt.Errorf("oauth2: grant %q is not one of client_credentials, token_exchange, jwt_bearer", p.Grant)
	}
	switch p.auth {
	case AuthSecretBasic, AuthSecretPost:
		if !p.ClientSecret.set() {
			return fmt.Errorf("oauth2: client_auth %s needs client_secret (credential: NAME)", p.auth)
		}
	case AuthPrivateKey:
		if !p.ClientKey.IsSet() {
			return errors.New("oauth2: client_auth private_key_jwt needs client_key (file, credential or transit)")
		}
	case AuthNone:
	default:
		return fmt.Errorf("oauth2: client_auth %q is not one of client_secret_basic, client_secret_post, private_key_jwt, none", p.auth)
	}
	if p.auth != AuthNone && p.ClientID == "" {
		return fmt.Errorf("oauth2: client_auth %s needs client_id", p.auth)
	}
	if p.ClientSecret.Credential != "" && !p.ClientSecret.Value.IsZero() {
		return errors.New("oauth2: client_secret: set credential or value, not both")
	}
	if p.ClientSecret.set() && p.auth != AuthSecretBasic && p.auth != AuthSecretPost {
		return fmt.Errorf("oauth2: client_secret is set but client_auth is %s", p.auth)
	}
	if p.ClientKey.IsSet() {
		if err := p.ClientKey.Validate("client_key"); err != nil {
			return fmt.Errorf("oauth2: %w", err)
		}
	}
	if p.Grant == GrantJWTBearer {
		if p.JWTBearer.Issuer == "" {
			return errors.New("oauth2: grant jwt_bearer needs jwt_bearer.issuer")
		}
		if !p.ClientKey.IsSet() {
			return errors.New("oauth2: grant jwt_bearer needs client_key to sign the assertion")
		}
		for _, c := range reservedClaims {
			if _, ok := p.JWTBearer.Claims[c]; ok {
				return fmt.Errorf("oauth2: jwt_bearer.claims may not set %s", c)
			}
		}
	}
	switch p.TokenExchange.SubjectFactor {
	case "", "jwt", "kubernetes":
	default:
		return fmt.Errorf("oauth2: token_exchange.subject_factor %q is not jwt or kubernetes", p.TokenExchange.SubjectFactor)
	}
	for _, r := range p.Resource {
		if u, err := url.Parse(r); err != nil || !u.IsAbs() || u.Fragment != "" {
			return fmt.Errorf("oauth2: resource %q is not an absolute URI without a fragment (RFC 8707)", r)
		}
	}
	for k := range p.Params {
		if slices.Contains(reservedParams, k) {
			return fmt.Errorf("oauth2: params may not set %s; use the provider's own setting", k)
		}
	}
	return nil
}

// reservedParams are form parameters the provider sets itself.
var reservedParams = []string{"grant_type", "scope", "audience", "resource", "client_id", "client_secret",
	"client_assertion", "client_assertion_type", "assertion", "subject_token", "subject_token_type", "requested_token_type"}

// reservedClaims are assertion claims the provider sets itself.
var reservedClaims = []string{"iss", "sub", "aud", "iat", "exp", "nbf", "jti"}

// Inputs lists the credentials the provider reads: the client secret's
// and the signing key's.
func (p *Provider) Inputs() []string {
	var in []string
	for _, n := range append([]string{p.ClientSecret.Credential}, p.ClientKey.Inputs()...) {
		if n != "" && !slices.Contains(in, n) {
			in = append(in, n)
		}
	}
	return in
}

// SetInputs keeps the providers of Inputs.
func (p *Provider) SetInputs(inputs map[string]providers.Provider) { p.inputs.SetInputs(inputs) }

// input fetches the credential name and returns its field (or the first
// of fields that is set).
func (p *Provider) input(ctx context.Context, req providers.Request, name string, fields ...string) (providers.Secret, error) {
	src := p.inputs.Map()[name]
	if src == nil {
		return providers.Secret{}, fmt.Errorf("oauth2: input credential %q was not provided", name)
	}
	in := req
	in.Credential = name
	c, err := src.Fetch(ctx, in)
	if err != nil {
		return providers.Secret{}, fmt.Errorf("oauth2: read credential %q: %w", name, err)
	}
	for _, f := range fields {
		if s, ok := c.Field(f); ok {
			return s, nil
		}
	}
	return providers.Secret{}, fmt.Errorf("oauth2: credential %q has no field %s", name, strings.Join(fields, " or "))
}

// scopeBase is the part of the cache scope common to all callers: every
// setting that selects a token (endpoint, grant, client, client
// authentication, scopes, audience, resource, params, assertion issuer,
// subject and claims, token types), each in full. The cache key's Version
// already changes with any setting; this keeps the key right for callers
// that build keys themselves.
func (p *Provider) scopeBase() *providers.Scope {
	s := providers.NewScope("oauth2").
		Add("token_url", p.TokenURL).
		Add("grant", p.Grant).
		Add("client_id", p.ClientID).
		Add("client_auth", p.auth).
		Add("audience", p.Audience).
		Add("assertion_audience", p.AssertionAudience).
		AddList("scopes", p.Scopes).
		AddList("resource", p.Resource).
		Add("token_exchange.subject_factor", p.TokenExchange.SubjectFactor).
		Add("token_exchange.subject_token_type", p.TokenExchange.SubjectTokenType).
		Add("token_exchange.requested_token_type", p.TokenExchange.RequestedTokenType).
		Add("jwt_bearer.issuer", p.JWTBearer.Issuer).
		Add("jwt_bearer.subject", p.JWTBearer.Subject)
	for _, k := range sortedKeys(p.Params) {
		s.Add("params."+k, p.Params[k])
	}
	claims := make(map[string]string, len(p.JWTBearer.Claims))
	for k, v := range p.JWTBearer.Claims {
		b, err := json.Marshal(v) // map keys sorted: deterministic
		if err != nil {
			b = []byte(fmt.Sprintf("%#v", v))
		}
		claims[k] = string(b)
	}
	for _, k := range sortedKeys(claims) {
		s.Add("jwt_bearer.claims."+k, claims[k])
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CacheScope keys tokens by every setting that selects one (scopeBase);
// a token exchange also by workload and by the subject token (its full
// SHA-256, never the token), so each workload gets its own token and a
// rotated workload token gets a new one.
func (p *Provider) CacheScope(req providers.Request) string {
	if p.Grant != GrantTokenExchange {
		return p.scope
	}
	tok, err := p.subjectToken(req)
	return providers.NewScope("oauth2").
		Add("settings", p.scope). // scopeBase, computed once
		Add("workload", req.Workload.DisplayName()).
		AddToken("subject_token", tok, err).String()
}

// ReissueOnUnauthorized implements providers.Reissuer: an access token
// can be revoked before it expires.
func (p *Provider) ReissueOnUnauthorized() bool { return true }

// Cleanup releases the Vault client of a transit key, if any.
func (p *Provider) Cleanup() error {
	if c, ok := p.signer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// String describes the provider by its token URL, grant and client. It is
// also what every fmt verb and slog print: the provider's runtime state
// (input providers, signer, HTTP client) holds secrets in unexported
// fields, which fmt would print raw.
func (p *Provider) String() string {
	return fmt.Sprintf("oauth2(%s, grant %s, client %s, auth %s)", httpclient.Display(p.TokenURL), p.Grant, orNone(p.ClientID), p.auth)
}

// GoString implements fmt.GoStringer.
func (p *Provider) GoString() string { return p.String() }

// Format implements fmt.Formatter.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// CheckSources reports client_key's file (or its transit login's file or
// variable) when it cannot be read now (providers.SourceChecker).
func (p *Provider) CheckSources() []providers.SourceProblem {
	return p.ClientKey.CheckSources("oauth2", "client_key.")
}

// Interface guards.
var (
	_ providers.SourceChecker = (*Provider)(nil)
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Provisioner   = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.Composer      = (*Provider)(nil)
	_ providers.Scoped        = (*Provider)(nil)
	_ providers.Reissuer      = (*Provider)(nil)
	_ providers.CleanerUpper  = (*Provider)(nil)
)
