// Package google is the "google" credential provider: Google Cloud and
// Google Workspace credentials from a service account's key, so that
// workloads call googleapis.com with no key of their own.
//
// Three modes:
//
//   - access_token (default): the OAuth 2.0 JWT bearer grant Google
//     documents for service accounts (RFC 7523): the gateway signs an
//     assertion (iss = the account's email, scope, aud = the token URI,
//     iat, exp ≤ 1 h, sub for domain-wide delegation) and exchanges it at
//     the token endpoint for an access token (about one hour);
//   - self_signed_jwt: no token endpoint call; the gateway signs a JWT
//     (iss = sub = the account's email, aud = https://SERVICE.googleapis.com/
//     or the scope claim, exp = iat + 1 h) that googleapis.com accepts as the
//     bearer token itself (Google AIP-4111);
//   - id_token: an OpenID Connect ID token whose aud is target_audience
//     (a Cloud Run URL, an IAP OAuth client ID), for services that check
//     Google-signed ID tokens: the assertion carries target_audience
//     instead of scope and the token endpoint answers an id_token. It
//     expires at the ID token's exp.
//
// The key is a service-account JSON key (a file or another credential of
// the policy), or a private key through providers/jwtsign (a PEM file,
// another credential, or a Vault transit key that never leaves Vault) with
// client_email and key_id.
//
// Or no key at all: workload_identity (keyless workload identity
// federation) exchanges a subject token — the calling workload's verified
// JWT, or a token the gateway holds in a file or another credential — at
// Google's Security Token Service (RFC 8693 token exchange, audience the
// workload identity pool provider) for a federated access token, and
// optionally impersonates a service account with it through the IAM
// Credentials API (generateAccessToken, or generateIdToken for id_token).
// See federation.go.
//
// The credential has providers.FieldToken, for the bearer injector.
//
// # Settings
//
//	provider: google
//	key: {file: /run/secrets/sa.json}      # or {credential: NAME, field: token}
//	# private_key: {transit: {...}, algorithm: RS256}   # instead of key:
//	# client_email: sa@project.iam.gserviceaccount.com
//	# key_id: 0123abcd
//	# workload_identity: {audience: //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X,
//	#   subject_token: {factor: jwt}, service_account: sa@p.iam.gserviceaccount.com}   # instead of a key
//	mode: access_token                    # or self_signed_jwt, id_token
//	scopes: [https://www.googleapis.com/auth/cloud-platform]
//	audience: https://pubsub.googleapis.com/   # self_signed_jwt without scopes
//	target_audience: https://hello-abc-uc.a.run.app   # id_token
//	subject: admin@example.com            # domain-wide delegation (access_token)
//	token_url: https://oauth2.googleapis.com/token   # default: the key's token_uri
//	ca_cert: /etc/ssl/extra.pem
//	timeout: 10s
package google

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/endpoint"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Name is the provider's registered name.
const Name = "google"

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "Google service-account access tokens, self-signed JWTs and ID tokens; keyless workload identity federation",
		SettingDocs: map[string]string{
			"key":               "where the service-account JSON key comes from",
			"private_key":       "instead of key: the account's private key (file, credential or Vault transit); needs client_email and key_id",
			"client_email":      "the service account's email, with private_key",
			"key_id":            "the key's ID (the JWT kid), with private_key",
			"mode":              "access_token (default), self_signed_jwt or id_token",
			"target_audience":   "id_token: the ID token's aud (a Cloud Run URL, an IAP OAuth client ID)",
			"workload_identity": "instead of a key: workload identity federation (STS token exchange of a subject token, optional service-account impersonation)",
			"scopes":            "OAuth scopes",
			"audience":          "the self-signed JWT's aud: https://SERVICE.googleapis.com/",
			"subject":           "the user impersonated through domain-wide delegation (access_token only)",
			"token_url":         "the token endpoint",
			"ca_cert":           "PEM roots for the token endpoint instead of the system roots",
			"timeout":           "bound on each token request",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Modes (the mode setting).
const (
	ModeAccessToken   = "access_token"
	ModeSelfSignedJWT = "self_signed_jwt"
	ModeIDToken       = "id_token"
)

// Defaults.
const (
	DefaultTokenURL = "https://oauth2.googleapis.com/token"
	DefaultTimeout  = 10 * time.Second
	// Lifetime is the lifetime of assertions and self-signed JWTs; Google
	// accepts at most one hour.
	Lifetime = time.Hour
	// AccessTokenLifetime is the lifetime Google documents for its
	// access tokens (an hour): what a token answer without expires_in
	// gets. Google always sends expires_in.
	AccessTokenLifetime = time.Hour
	// expiryMargin is how much earlier than Google says a token is
	// treated as expired (clock skew, transit time).
	expiryMargin   = time.Minute
	grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Provider is the "google" provider. Its exported fields are its
// settings; see the package documentation.
type Provider struct {
	// Key is where the service-account JSON key comes from.
	Key KeyFile `yaml:"key"`
	// PrivateKey, instead of Key, is the account's private key through
	// providers/jwtsign (PEM file, another credential, Vault transit);
	// ClientEmail and KeyID are then required.
	PrivateKey jwtsign.KeySource `yaml:"private_key"`
	// ClientEmail is the service account's email, with PrivateKey.
	ClientEmail string `yaml:"client_email"`
	// KeyID is the key's ID (the JWT kid), with PrivateKey.
	KeyID string `yaml:"key_id"`
	// WorkloadIdentity, instead of Key or PrivateKey, is keyless workload
	// identity federation.
	WorkloadIdentity *Federation `yaml:"workload_identity"`
	// Mode is access_token (default), self_signed_jwt or id_token.
	Mode string `yaml:"mode"`
	// TargetAudience is the ID token's aud, with mode id_token.
	TargetAudience string `yaml:"target_audience"`
	// Scopes are OAuth scopes. Required for access_token; with
	// self_signed_jwt they become the scope claim, unless Audience is set.
	Scopes []string `yaml:"scopes"`
	// Audience is the self-signed JWT's aud: https://SERVICE.googleapis.com/.
	Audience string `yaml:"audience"`
	// Subject is the user impersonated through domain-wide delegation
	// (access_token only).
	Subject string `yaml:"subject"`
	// TokenURL is the token endpoint. Default: the key's token_uri, else
	// https://oauth2.googleapis.com/token.
	TokenURL string `yaml:"token_url"`
	// CACert is a PEM file of roots for the token endpoint, instead of the
	// system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each token request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	client *http.Client
	signer jwtsign.Signer // with PrivateKey
	scope  string
	now    func() time.Time

	providers.InputSet `yaml:"-"`
	// log is where ServerExpiry says a Date it did not trust (providers.Env).
	log *slog.Logger
}

// KeyFile says where a service-account JSON key comes from: a file, or
// another credential's field.
type KeyFile struct {
	// File is the JSON key file, read at every fetch.
	File string `yaml:"file"`
	// Credential names another credential holding the JSON key.
	Credential string `yaml:"credential"`
	// Field is that credential's field. Default "token".
	Field string `yaml:"field"`
}

func (k KeyFile) set() bool { return k.File != "" || k.Credential != "" }

// serviceAccountKey is the part of a JSON key the provider reads.
type serviceAccountKey struct {
	Type         string `json:"type"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// Provision applies defaults and prepares the client and signer. It reads
// nothing but ca_cert and contacts nothing.
func (p *Provider) Provision(ctx context.Context) error {
	p.log = providers.EnvFrom(ctx).Log
	if p.Mode == "" {
		p.Mode = ModeAccessToken
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.WorkloadIdentity != nil {
		p.WorkloadIdentity.defaults()
	}
	if p.PrivateKey.IsSet() {
		if p.PrivateKey.Algorithm == "" {
			p.PrivateKey.Algorithm = jwtsign.RS256
		}
		if p.PrivateKey.KeyID == "" {
			p.PrivateKey.KeyID = p.KeyID
		}
		s, err := jwtsign.New(p.PrivateKey, "private_key", jwtsign.FromInputs(p.Map))
		if err != nil {
			return fmt.Errorf("google: %w", err)
		}
		p.signer = s
	}
	// internal/httpclient's client ignores the proxy environment: the
	// gateway's own calls never go through HTTPS_PROXY.
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("google: %w", err)
	}
	p.client = c
	p.scope = p.scopeDigest()
	return nil
}

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	if p.WorkloadIdentity != nil {
		return p.validateFederation()
	}
	switch {
	case p.Key.set() == p.PrivateKey.IsSet():
		return errors.New("google: set key (the service account's JSON key: file or credential), or private_key with client_email and key_id, or workload_identity (keyless)")
	case p.Key.File != "" && p.Key.Credential != "":
		return errors.New("google: key: set file or credential, not both")
	case p.Key.Field != "" && p.Key.Credential == "":
		return errors.New("google: key.field is set without key.credential")
	case p.PrivateKey.IsSet() && p.ClientEmail == "":
		return errors.New("google: private_key needs client_email (the service account's email)")
	case p.Key.set() && (p.ClientEmail != "" || p.KeyID != ""):
		return errors.New("google: client_email and key_id come from the JSON key; set them only with private_key")
	case p.PrivateKey.IsSet() && p.PrivateKey.Algorithm != jwtsign.RS256:
		return fmt.Errorf("google: private_key.algorithm is %s; Google service-account JWTs are RS256", p.PrivateKey.Algorithm)
	}
	if err := p.validateMode(); err != nil {
		return err
	}
	if p.Mode == ModeSelfSignedJWT {
		if p.Subject != "" {
			return errors.New("google: subject (domain-wide delegation) needs mode access_token")
		}
		if p.Audience != "" {
			u, err := url.Parse(p.Audience)
			if err != nil || u.Scheme != "https" || !strings.HasSuffix(u.Host, ".googleapis.com") || u.Path != "/" {
				return fmt.Errorf("google: audience %q is not of the form https://SERVICE.googleapis.com/", p.Audience)
			}
		}
	}
	if p.Mode == ModeIDToken && p.Subject != "" {
		return errors.New("google: subject (domain-wide delegation) needs mode access_token; an ID token is the service account's own")
	}
	if p.TokenURL != "" {
		if err := checkTokenURL(p.TokenURL); err != nil {
			return err
		}
	}
	if p.PrivateKey.IsSet() {
		if err := p.PrivateKey.Validate("private_key"); err != nil {
			return fmt.Errorf("google: %w", err)
		}
	}
	return nil
}

// validateMode checks the settings each mode needs or refuses.
func (p *Provider) validateMode() error {
	if p.TargetAudience != "" && p.Mode != ModeIDToken {
		return errors.New("google: target_audience is for mode id_token")
	}
	switch p.Mode {
	case ModeAccessToken:
		if len(p.Scopes) == 0 {
			return errors.New("google: mode access_token needs scopes (e.g. https://www.googleapis.com/auth/cloud-platform)")
		}
		if p.Audience != "" {
			return errors.New("google: audience is for mode self_signed_jwt; an access token's reach is its scopes")
		}
	case ModeSelfSignedJWT:
		if len(p.Scopes) == 0 && p.Audience == "" {
			return errors.New("google: mode self_signed_jwt needs audience (https://SERVICE.googleapis.com/) or scopes")
		}
	case ModeIDToken:
		if p.TargetAudience == "" {
			return errors.New("google: mode id_token needs target_audience (the receiving service's URL, e.g. https://hello-abc-uc.a.run.app, or an IAP OAuth client ID)")
		}
		if len(p.Scopes) > 0 || p.Audience != "" {
			return errors.New("google: mode id_token takes target_audience, not scopes or audience; remove them")
		}
	default:
		return fmt.Errorf("google: mode %q is not access_token, self_signed_jwt or id_token", p.Mode)
	}
	return nil
}

// checkTokenURL requires https, except for a loopback host.
func checkTokenURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("google: token_url %q is not an https URL", raw)
	case u.User != nil:
		return errors.New("google: token_url must not carry credentials")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("google: token_url %q must use https (http only for a loopback host)", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Inputs lists the credential holding the key, or the subject token, if
// any.
func (p *Provider) Inputs() []string {
	if f := p.WorkloadIdentity; f != nil {
		if f.SubjectToken.Credential != "" {
			return []string{f.SubjectToken.Credential}
		}
		return nil
	}
	if p.Key.Credential != "" {
		return []string{p.Key.Credential}
	}
	return p.PrivateKey.Inputs()
}

// scopeDigest covers every setting that shapes the credential, in full
// (providers.Scope).
func (p *Provider) scopeDigest() string {
	sc := providers.NewScope("google:"+p.Mode).
		AddList("settings", []string{p.Mode, p.Key.File, p.Key.Credential, p.Key.Field, p.PrivateKey.File,
			p.PrivateKey.Credential, p.PrivateKey.Field, p.ClientEmail, p.KeyID, p.Audience, p.Subject, p.TokenURL, p.TargetAudience})
	if f := p.WorkloadIdentity; f != nil {
		sc.AddList("workload_identity", []string{f.Audience, f.SubjectToken.Factor, f.SubjectToken.File, f.SubjectToken.Credential,
			f.SubjectToken.Field, f.SubjectTokenType, f.ServiceAccount, f.Lifetime.String(), f.STSURL, f.IAMCredentialsURL})
	}
	if t := p.PrivateKey.Transit; t != nil {
		sc.AddList("transit", []string{t.Server.Address, t.Mount, t.Key})
	}
	scopes := slices.Clone(p.Scopes)
	slices.Sort(scopes)
	return sc.AddList("scopes", scopes).String()
}

// CacheScope keys credentials by every setting that shapes them. They do
// not depend on the caller, except with workload_identity's
// subject_token.factor: then the workload and the full SHA-256 of its
// token (never the token) are part of the scope, so each workload gets
// its own federated token and a rotated workload token a new one.
func (p *Provider) CacheScope(req providers.Request) string {
	if p.WorkloadIdentity == nil || p.WorkloadIdentity.SubjectToken.Factor == "" {
		return p.scope
	}
	tok, err := p.WorkloadIdentity.workloadToken(req)
	return providers.NewScope("google").
		Add("settings", p.scope).
		Add("workload", req.Workload.DisplayName()).
		AddToken("subject_token", tok, err).String()
}

// ReissueOnUnauthorized implements providers.Reissuer: an access token or
// an ID token from Google can be revoked (or its account disabled) before
// it expires; a self-signed JWT would only be signed again alike.
func (p *Provider) ReissueOnUnauthorized() bool { return p.Mode != ModeSelfSignedJWT }

// Cleanup releases idle connections and a transit key's Vault client.
func (p *Provider) Cleanup() error {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	if c, ok := p.signer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// account is a resolved signing identity.
type account struct {
	email, tokenURI string
	signer          jwtsign.Signer
}

// account reads the JSON key (or uses the configured private key).
func (p *Provider) account(ctx context.Context, req providers.Request) (account, error) {
	if p.signer != nil {
		return account{email: p.ClientEmail, tokenURI: p.TokenURL, signer: p.signer}, nil
	}
	var data []byte
	var where string
	if p.Key.File != "" {
		where = "key.file " + p.Key.File
		b, err := providers.ReadFile(ctx, "google: key.file", "the key", p.Key.File)
		if err != nil {
			return account{}, err
		}
		data = b
	} else {
		where = fmt.Sprintf("key.credential %q", p.Key.Credential)
		in := p.Map()[p.Key.Credential]
		if in == nil {
			return account{}, fmt.Errorf("google: %s: the input credential was not provided", where)
		}
		r := req
		r.Credential = p.Key.Credential
		c, err := in.Fetch(ctx, r)
		if err != nil {
			return account{}, fmt.Errorf("google: %s: %w", where, err)
		}
		field := p.Key.Field
		if field == "" {
			field = providers.FieldToken
		}
		s, ok := c.Field(field)
		if !ok {
			return account{}, fmt.Errorf("google: %s has no field %s holding the JSON key", where, field)
		}
		data = []byte(s.Reveal())
	}
	var k serviceAccountKey
	if err := json.Unmarshal(data, &k); err != nil {
		return account{}, fmt.Errorf("google: %s is not a JSON service-account key (download one from IAM > Service accounts > Keys)", where)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" {
		return account{}, fmt.Errorf("google: %s: the JSON key is of type %q, want a service_account key with client_email and private_key", where, k.Type)
	}
	key, err := jwtsign.ParsePrivateKey([]byte(k.PrivateKey))
	if err != nil {
		return account{}, fmt.Errorf("google: %s: private_key: %w", where, err)
	}
	s, err := jwtsign.NewFromKey(key, jwtsign.RS256, k.PrivateKeyID)
	if err != nil {
		return account{}, fmt.Errorf("google: %s: %w", where, err)
	}
	uri := p.TokenURL
	if uri == "" {
		uri = k.TokenURI
		if uri != "" {
			if err := checkTokenURL(uri); err != nil {
				return account{}, fmt.Errorf("google: %s: token_uri: %w", where, err)
			}
		}
	}
	return account{email: k.ClientEmail, tokenURI: uri, signer: s}, nil
}

// Fetch returns an access token, a self-signed JWT or an ID token.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	if p.WorkloadIdentity != nil {
		return p.federate(ctx, req)
	}
	ctx = jwtsign.WithRequest(ctx, req)
	acct, err := p.account(ctx, req)
	if err != nil {
		return nil, err
	}
	if acct.tokenURI == "" {
		acct.tokenURI = DefaultTokenURL
	}
	now := p.now()
	claims := map[string]any{"iss": acct.email, "iat": now.Unix(), "exp": now.Add(Lifetime).Unix()}
	if p.Mode == ModeSelfSignedJWT {
		claims["sub"] = acct.email
		if p.Audience != "" {
			claims["aud"] = p.Audience
		} else {
			claims["scope"] = strings.Join(p.Scopes, " ")
		}
		jwt, err := acct.signer.Sign(ctx, nil, claims)
		if err != nil {
			return nil, fmt.Errorf("google: sign a self-signed JWT for %s: %w", acct.email, err)
		}
		return &providers.Credential{
			Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(jwt)},
			Expiry: now.Add(Lifetime - expiryMargin),
		}, nil
	}
	claims["aud"] = acct.tokenURI
	if p.Mode == ModeIDToken {
		// Google's service-account ID token flow: target_audience instead
		// of scope; the token endpoint answers an id_token.
		claims["target_audience"] = p.TargetAudience
		assertion, err := acct.signer.Sign(ctx, nil, claims)
		if err != nil {
			return nil, fmt.Errorf("google: sign the ID token assertion for %s: %w", acct.email, err)
		}
		return p.exchange(ctx, acct, assertion)
	}
	claims["scope"] = strings.Join(p.Scopes, " ")
	if p.Subject != "" {
		claims["sub"] = p.Subject
	}
	assertion, err := acct.signer.Sign(ctx, nil, claims)
	if err != nil {
		return nil, fmt.Errorf("google: sign the assertion for %s: %w", acct.email, err)
	}
	return p.exchange(ctx, acct, assertion)
}

// exchange makes the JWT bearer token request: an access token, or an
// ID token when the assertion carries target_audience.
func (p *Provider) exchange(ctx context.Context, acct account, assertion string) (*providers.Credential, error) {
	op := fmt.Sprintf("google: token request for %s to %s", acct.email, httpclient.Display(acct.tokenURI))
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}
	a, err := p.post(ctx, op, acct.tokenURI, "application/x-www-form-urlencoded", []byte(form.Encode()), "")
	if err != nil {
		return nil, err
	}
	switch {
	case a.status == http.StatusOK:
	case a.code == "invalid_grant":
		return nil, fmt.Errorf("%s: Google refused the assertion (invalid_grant): check that the key is a current key of %s, that the account is enabled, that subject (if set) is allowed by domain-wide delegation, and that the gateway's clock is correct", op, acct.email)
	case a.code == "invalid_client" || a.status == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: Google does not know the key (invalid_client, %d): the key was deleted or the account disabled; create a new key", op, a.status)
	case a.code == "invalid_scope" && p.Mode == ModeIDToken:
		return nil, fmt.Errorf("%s: Google refused the ID token request (invalid_scope): check target_audience", op)
	case a.code == "invalid_scope":
		return nil, fmt.Errorf("%s: Google refused the scopes (invalid_scope): check scopes", op)
	default:
		return nil, a.refused(op)
	}
	var out struct {
		AccessToken string          `json:"access_token"`
		IDToken     string          `json:"id_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		return nil, fmt.Errorf("%s: the answer is not JSON: %w", op, providers.ErrUnavailable)
	}
	if p.Mode == ModeIDToken {
		if out.IDToken == "" {
			return nil, fmt.Errorf("%s: the answer has no id_token; check that token_url is Google's token endpoint", op)
		}
		return idTokenCredential(op, out.IDToken, a)
	}
	if out.AccessToken == "" {
		return nil, fmt.Errorf("%s: the answer has no access_token", op)
	}
	return accessTokenCredential(op, out.AccessToken, a.start, out.ExpiresIn)
}

// accessTokenCredential is an access token that expires expiresIn
// seconds after start, a margin early: expiryMargin, at most half the
// lifetime, so that a token granted for less than two margins is used
// for half its life rather than refused as expired on arrival. An
// answer without expires_in gets AccessTokenLifetime, the lifetime
// Google documents for its access tokens; 0, a negative count or a
// value that is not a whole number of seconds is refused, naming
// expires_in (providers.LifetimeSeconds): never served for a default
// hour.
func accessTokenCredential(op, tok string, start time.Time, expiresIn json.RawMessage) (*providers.Credential, error) {
	life, present, err := providers.LifetimeSeconds("expires_in", expiresIn)
	if err != nil {
		return nil, fmt.Errorf("%s: the answer's %w", op, err)
	}
	if !present {
		life = AccessTokenLifetime
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(tok)},
		Expiry: start.Add(life - min(expiryMargin, life/2)),
	}, nil
}

// idTokenCredential is an ID token that expires at its exp claim, a
// margin early; exp is on Google's clock, counted on the gateway's from
// the answer's Date (providers.ServerExpiry). The token came from Google
// over verified TLS; its signature is the receiving service's to check.
func idTokenCredential(op, tok string, a *answer) (*providers.Credential, error) {
	var claims struct {
		Exp int64 `json:"exp"`
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%s: the ID token in the answer is not a JWT", op)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(b, &claims) != nil || claims.Exp <= 0 {
		return nil, fmt.Errorf("%s: the ID token in the answer has no readable exp claim", op)
	}
	stated := time.Unix(claims.Exp, 0)
	exp := providers.ServerExpiry(a.log, op, stated, a.date, a.start)
	if !exp.After(a.start.Add(expiryMargin)) {
		return nil, fmt.Errorf("%s: the ID token in the answer expires at %s (its exp), already past or within %s by the clock of the answer (its Date header; without one, the gateway's clock: check it): %w: %w", op, stated.UTC().Format(time.RFC3339), expiryMargin, providers.ErrBadLifetime, providers.ErrUnavailable)
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(tok)},
		Expiry: exp.Add(-expiryMargin),
	}, nil
}

// answer is a Google endpoint's answer that was not a transient failure.
type answer struct {
	status int
	text   string // "403 Forbidden"
	body   []byte
	// code is the error code: an OAuth endpoint's "error" string, or the
	// "status" of a Google API error (PERMISSION_DENIED). Never the
	// description, which may echo what was sent.
	code  string
	start time.Time // when the request was sent
	// date is the answer's Date header: Google's clock, which the
	// instants it states (expireTime, an ID token's exp) are on.
	date time.Time
	// log is the provider's (ServerExpiry).
	log *slog.Logger
}

// refused words an answer no caller recognised: the status and the code.
func (a *answer) refused(op string) error {
	code := a.code
	if code == "" || len(code) > 40 || strings.ContainsFunc(code, func(r rune) bool { return r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') }) {
		code = "no error code"
	}
	return fmt.Errorf("%s: Google answered %s (%s)", op, a.text, code)
}

// post sends one POST to a Google endpoint, with a bearer token when
// bearer is set. Transport failures, 429 and 5xx are returned as errors
// wrapping providers.ErrUnavailable; every other answer is returned for
// the caller to word.
func (p *Provider) post(ctx context.Context, op, target, contentType string, body []byte, bearer string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	start := p.now()
	resp, data, err := endpoint.Do(p.client, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if endpoint.Unavailable(resp.StatusCode) {
		return nil, fmt.Errorf("%s: Google answered %s: %w", op, resp.Status, providers.ErrUnavailable)
	}
	a := &answer{status: resp.StatusCode, text: resp.Status, body: data, start: start, date: providers.AnswerDate(resp.Header), log: p.log}
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && len(e.Error) > 0 {
		var code string
		var apiErr struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(e.Error, &code) == nil {
			a.code = code
		} else if json.Unmarshal(e.Error, &apiErr) == nil {
			a.code = apiErr.Status
		}
	}
	return a, nil
}

// String describes the provider; it is what every fmt verb and slog print.
func (p *Provider) String() string {
	src := p.Key.File
	switch {
	case p.Key.Credential != "":
		src = "credential " + p.Key.Credential
	case p.WorkloadIdentity != nil && p.WorkloadIdentity.ServiceAccount != "":
		src = "workload identity as " + p.WorkloadIdentity.ServiceAccount
	case p.WorkloadIdentity != nil:
		src = "workload identity"
	case p.ClientEmail != "":
		src = p.ClientEmail
	}
	return fmt.Sprintf("google(%s, %s)", p.Mode, src)
}

// GoString implements fmt.GoStringer.
func (p *Provider) GoString() string { return p.String() }

// Format implements fmt.Formatter.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// CheckSources reports key.file, private_key's file (or its transit
// login's file or variable) and workload_identity.subject_token.file when
// they cannot be read now (providers.SourceChecker).
func (p *Provider) CheckSources() []providers.SourceProblem {
	var out []providers.SourceProblem
	if p.Key.File != "" {
		out = append(out, providers.CheckSecretFile("google", "key.file", p.Key.File, "the service account's JSON key")...)
	}
	out = append(out, p.PrivateKey.CheckSources("google", "private_key.")...)
	if p.WorkloadIdentity != nil && p.WorkloadIdentity.SubjectToken.File != "" {
		// A workload's OIDC token, mostly a projected service-account
		// token: judged for write and owner only (0644 is Kubernetes').
		out = append(out, providers.CheckTokenFile("google", "workload_identity.subject_token.file", p.WorkloadIdentity.SubjectToken.File, "the subject token")...)
	}
	return out
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
