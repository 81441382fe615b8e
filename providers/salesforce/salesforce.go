// Package salesforce is the "salesforce" credential provider: access
// tokens from Salesforce's OAuth 2.0 JWT bearer flow, each pinned to the
// instance it was issued for.
//
// The gateway signs an assertion with the connected app's private key
// (RS256; iss = the consumer key, sub = the Salesforce username, aud = the
// authorization server Salesforce documents, exp at most three minutes
// ahead) and posts it to {login_url}/services/oauth2/token with grant_type
// urn:ietf:params:oauth:grant-type:jwt-bearer. Salesforce answers with an
// access token and the instance_url of the org (https://acme.my.salesforce.com).
//
// The token is valid only on that instance, and an org can move to
// another. So the credential carries the instance's host in
// providers.Credential.Hosts: the gateway refuses to send it to any other
// host, even one the rule's destination pattern (*.my.salesforce.com)
// matches, and when a new token reports a new instance, requests follow it
// and the old host is refused.
//
// The token answer has no expiry (a Salesforce session lasts the org's
// session timeout, extended by use), so session_timeout says how long the
// gateway reuses one; a 401 from the instance drops it earlier
// (providers.Reissuer).
//
// # Settings
//
//	provider: salesforce
//	login_url: https://login.salesforce.com   # test.salesforce.com, or a My Domain
//	audience: https://login.salesforce.com    # optional: the assertion's aud; default Audience(login_url)
//	client_id: 3MVG9...                       # the connected app's consumer key
//	username: integration@acme.com
//	private_key: {file: /run/secrets/sf.pem}  # or {credential: NAME}
//	instance_hosts: ["*.my.salesforce.com"]   # hosts an instance_url may name
//	session_timeout: 15m
//	ca_cert: /etc/ssl/extra.pem
//	timeout: 10s
package salesforce

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
	"strings"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/endpoint"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Name is the provider's registered name.
const Name = "salesforce"

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "Salesforce access tokens (OAuth 2.0 JWT bearer flow), sent only to the instance they were issued for",
		SettingDocs: map[string]string{
			"login_url":       "the login host the token request goes to: https://login.salesforce.com (default), https://test.salesforce.com or a My Domain",
			"audience":        "the assertion's aud; default https://login.salesforce.com for it and a My Domain, https://test.salesforce.com for it and a sandbox My Domain, else login_url",
			"client_id":       "the connected app's consumer key (the assertion's iss)",
			"username":        "the Salesforce user the token acts as (the assertion's sub)",
			"private_key":     "the connected app certificate's private key: a PEM file or another credential (encrypted PKCS#8 with passphrase: {credential: NAME}), or a Vault transit key",
			"instance_hosts":  `hosts an instance_url may name ("*.my.salesforce.com" is any subdomain); default *.salesforce.com`,
			"session_timeout": "how long an access token is reused (default 15m, Salesforce's shortest session timeout)",
			"ca_cert":         "PEM roots for the login host instead of the system roots",
			"timeout":         "bound on each token request (default 10s)",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Defaults and limits.
const (
	DefaultLoginURL       = "https://login.salesforce.com"
	DefaultSessionTimeout = 15 * time.Minute
	DefaultTimeout        = 10 * time.Second
	// AssertionLifetime is the assertion's exp - now; Salesforce accepts
	// at most three minutes.
	AssertionLifetime = 3 * time.Minute
	// TokenPath is the token endpoint under the login URL.
	TokenPath      = "/services/oauth2/token"
	grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	expiryMargin   = time.Minute
)

// Audience returns the aud Salesforce accepts in an assertion posted to
// loginURL. Salesforce documents three: https://login.salesforce.com,
// https://test.salesforce.com and an Experience Cloud site's URL; a My
// Domain is not one of them, so an assertion posted to a My Domain login
// host (ORG.my.salesforce.com) names https://login.salesforce.com, and to
// a sandbox's (ORG--SANDBOX.sandbox.my.salesforce.com)
// https://test.salesforce.com. Any other login host (an Experience Cloud
// site, a test server) is its own audience.
func Audience(loginURL string) string {
	origin := strings.TrimSuffix(loginURL, "/")
	u, err := url.Parse(origin)
	if err != nil {
		return origin
	}
	switch host := strings.ToLower(u.Hostname()); {
	case host == "test.salesforce.com" || strings.HasSuffix(host, ".sandbox.my.salesforce.com"):
		return "https://test.salesforce.com"
	case host == "login.salesforce.com" || strings.HasSuffix(host, ".my.salesforce.com"):
		return DefaultLoginURL
	}
	return origin
}

// DefaultInstanceHosts are the hosts an instance_url may name when
// instance_hosts is not set.
var DefaultInstanceHosts = []string{"*.salesforce.com"}

// Provider is the "salesforce" provider. Its exported fields are its
// settings; see the package documentation.
type Provider struct {
	// LoginURL is the login host: the token endpoint's origin. Default
	// https://login.salesforce.com.
	LoginURL string `yaml:"login_url"`
	// Audience is the assertion's aud. Default Audience(LoginURL).
	Audience string `yaml:"audience"`
	// ClientID is the connected app's consumer key.
	ClientID string `yaml:"client_id"`
	// Username is the Salesforce user the token acts as.
	Username string `yaml:"username"`
	// PrivateKey is the key of the certificate uploaded to the connected
	// app (RS256).
	PrivateKey jwtsign.KeySource `yaml:"private_key"`
	// InstanceHosts are the hosts an instance_url may name: exact names,
	// or "*.suffix" for any subdomain. Default *.salesforce.com.
	InstanceHosts []string `yaml:"instance_hosts"`
	// SessionTimeout is how long an access token is reused. Default 15m.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// CACert is a PEM file of roots for the login host.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each token request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	client   *http.Client
	signer   jwtsign.Signer
	aud      string // Audience, else Audience(LoginURL)
	tokenURL string
	scope    string
	now      func() time.Time

	providers.InputSet `yaml:"-"`
}

// Provision applies defaults and builds the signer and client. It reads
// nothing but ca_cert and contacts nothing.
func (p *Provider) Provision(context.Context) error {
	if p.LoginURL == "" {
		p.LoginURL = DefaultLoginURL
	}
	if len(p.InstanceHosts) == 0 {
		p.InstanceHosts = slices.Clone(DefaultInstanceHosts)
	}
	if p.SessionTimeout == 0 {
		p.SessionTimeout = DefaultSessionTimeout
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.PrivateKey.Algorithm == "" {
		p.PrivateKey.Algorithm = jwtsign.RS256
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.aud = strings.TrimSuffix(p.Audience, "/")
	if p.aud == "" {
		p.aud = Audience(p.LoginURL)
	}
	p.tokenURL = strings.TrimSuffix(p.LoginURL, "/") + TokenPath
	for i, h := range p.InstanceHosts {
		p.InstanceHosts[i] = strings.ToLower(h)
	}
	p.scope = providers.NewScope(Name).
		AddList("settings", []string{p.aud, p.tokenURL, p.ClientID, p.Username, p.PrivateKey.File, p.PrivateKey.Credential,
			p.PrivateKey.Field, p.SessionTimeout.String()}).
		AddList("instance_hosts", p.InstanceHosts).
		AddList("passphrase", passphrase(p.PrivateKey)).String()
	if p.PrivateKey.IsSet() {
		s, err := jwtsign.New(p.PrivateKey, "private_key", jwtsign.FromInputs(p.Map))
		if err != nil {
			return fmt.Errorf("salesforce: %w", err)
		}
		p.signer = s
	}
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("salesforce: %w", err)
	}
	p.client = c
	return nil
}

// passphrase lists the settings of k's passphrase, for the cache scope.
func passphrase(k jwtsign.KeySource) []string {
	if k.Passphrase == nil {
		return nil
	}
	return []string{k.Passphrase.Credential, k.Passphrase.Field}
}

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	switch {
	case p.ClientID == "":
		return errors.New("salesforce: set client_id (the connected app's consumer key)")
	case p.Username == "":
		return errors.New("salesforce: set username (the Salesforce user the gateway acts as, pre-authorized for the connected app)")
	case !p.PrivateKey.IsSet():
		return errors.New("salesforce: set private_key: {file: PATH} (the key of the certificate uploaded to the connected app) or {credential: NAME}")
	case p.PrivateKey.Algorithm != jwtsign.RS256:
		return fmt.Errorf("salesforce: private_key.algorithm is %s; Salesforce's JWT bearer flow is RS256", p.PrivateKey.Algorithm)
	case p.SessionTimeout < 2*expiryMargin || p.SessionTimeout > 24*time.Hour:
		return fmt.Errorf("salesforce: session_timeout %s: set the org's session timeout, between 2m and 24h", p.SessionTimeout)
	}
	if err := httpclient.CheckURL(p.LoginURL); err != nil {
		return fmt.Errorf("salesforce: login_url %w", err)
	}
	if u, _ := url.Parse(p.LoginURL); strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" {
		return fmt.Errorf("salesforce: login_url %q: write the origin only (https://login.salesforce.com), without a path", httpclient.Display(p.LoginURL))
	}
	if p.Audience != "" {
		if err := httpclient.CheckURL(p.Audience); err != nil {
			return fmt.Errorf("salesforce: audience %w", err)
		}
	}
	for _, h := range p.InstanceHosts {
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.ContainsAny(name, "*/:@ ") || !strings.Contains(name, ".") && !httpclient.IsLoopbackHost(name) {
			return fmt.Errorf("salesforce: instance_hosts: %q is not a host name or *.domain pattern (e.g. *.my.salesforce.com)", h)
		}
	}
	if err := p.PrivateKey.Validate("private_key"); err != nil {
		return fmt.Errorf("salesforce: %w", err)
	}
	return nil
}

// Inputs lists the credential holding the key, if any.
func (p *Provider) Inputs() []string { return p.PrivateKey.Inputs() }

// CacheScope keys credentials by every setting that shapes them; they do
// not depend on the caller.
func (p *Provider) CacheScope(providers.Request) string { return p.scope }

// ReissueOnUnauthorized implements providers.Reissuer: a session ends
// before session_timeout when it is revoked, the user logs out everywhere,
// or the org moves to another instance.
func (p *Provider) ReissueOnUnauthorized() bool { return true }

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

// instanceAllowed reports whether host matches InstanceHosts.
func (p *Provider) instanceAllowed(host string) bool {
	for _, h := range p.InstanceHosts {
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}

// Fetch runs the JWT bearer flow.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	if p.signer == nil {
		return nil, errors.New("salesforce: the provider was not provisioned")
	}
	op := fmt.Sprintf("salesforce: token request for %s (client_id %s) to %s", p.Username, p.ClientID, p.tokenURL)
	now := p.now()
	assertion, err := p.signer.Sign(jwtsign.WithRequest(ctx, req), nil, map[string]any{
		"iss": p.ClientID, "sub": p.Username, "aud": p.aud, "exp": now.Add(AssertionLifetime).Unix(),
	})
	if err != nil {
		return nil, fmt.Errorf("salesforce: sign the assertion for %s: %w", p.Username, err)
	}
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	resp, data, err := endpoint.Do(p.client, hreq)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(data, &out)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %w", op, p.tokenError(resp, out.Error, out.Description))
	}
	if out.AccessToken == "" {
		return nil, fmt.Errorf("%s: the answer has no access_token", op)
	}
	host, err := p.instanceHost(out.InstanceURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(out.AccessToken)},
		Hosts:  []string{host},
		Expiry: now.Add(p.SessionTimeout - expiryMargin),
	}, nil
}

// instanceHost checks the answer's instance_url and returns its host.
func (p *Provider) instanceHost(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("the answer has no instance_url; the gateway cannot tell which instance the token is for")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" || u.User != nil || (u.Scheme != "https" && !(u.Scheme == "http" && httpclient.IsLoopbackHost(u.Hostname()))) {
		return "", fmt.Errorf("instance_url %q is not an https URL", httpclient.Display(raw))
	}
	host := strings.ToLower(u.Hostname())
	if !p.instanceAllowed(host) {
		return "", fmt.Errorf("instance_url names host %s, which instance_hosts (%s) does not allow; if the org moved there, add it to instance_hosts", host, strings.Join(p.InstanceHosts, ", "))
	}
	return host, nil
}

// tokenError maps a refused token request to what to change. It quotes
// only Salesforce's error code, never the answer's body.
func (p *Provider) tokenError(resp *http.Response, code, desc string) error {
	desc = strings.ToLower(desc)
	switch s := resp.StatusCode; {
	case endpoint.Unavailable(s):
		return fmt.Errorf("the token endpoint answered %s: %w", resp.Status, providers.ErrUnavailable)
	case code == "invalid_client_id":
		return fmt.Errorf("unknown client_id %s (invalid_client_id): Salesforce knows no connected app with it; set client_id to the connected app's consumer key, and check that login_url is the org's login host (https://test.salesforce.com for a sandbox)", p.ClientID)
	case code == "invalid_client":
		return errors.New("connected app refused (invalid_client): check client_id and that the app is enabled for the JWT bearer flow")
	case code == "invalid_grant" && strings.Contains(desc, "audience"):
		return fmt.Errorf("wrong audience %s (invalid_grant): Salesforce takes https://login.salesforce.com (production, also through a My Domain login_url), https://test.salesforce.com (a sandbox) or an Experience Cloud site's URL; set audience", p.aud)
	case code == "invalid_grant" && (strings.Contains(desc, "approved") || strings.Contains(desc, "authorized")):
		return fmt.Errorf("user %s is not pre-authorized for the connected app (invalid_grant): in the connected app set Permitted Users to \"Admin approved users are pre-authorized\" and add the user's profile or permission set", p.Username)
	case code == "invalid_grant" && strings.Contains(desc, "expired"):
		return errors.New("assertion expired on arrival (invalid_grant): check the gateway's clock (NTP)")
	case code == "invalid_grant":
		return fmt.Errorf("assertion refused (invalid_grant): check that private_key matches the certificate uploaded to the connected app, that user %s is pre-authorized for it, that login_url is the org's login host, and the gateway's clock", p.Username)
	}
	if code == "" || len(code) > 40 || strings.ContainsAny(code, " \t\r\n") {
		code = "no error code"
	}
	return fmt.Errorf("the token endpoint answered %s (%s)", resp.Status, code)
}

// String describes the provider; it is what every fmt verb and slog print.
func (p *Provider) String() string {
	return fmt.Sprintf("salesforce(%s at %s)", p.Username, httpclient.Display(p.LoginURL))
}

// GoString implements fmt.GoStringer.
func (p *Provider) GoString() string { return p.String() }

// Format implements fmt.Formatter.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// CheckSources reports the private key's file (or its transit login's
// file or variable) when it cannot be read now (providers.SourceChecker).
func (p *Provider) CheckSources() []providers.SourceProblem {
	return p.PrivateKey.CheckSources("salesforce", "private_key.")
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
