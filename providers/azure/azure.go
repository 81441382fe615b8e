// Package azure is the "azure" credential provider: Microsoft Entra ID
// (Azure AD) access tokens for an application, by the OAuth 2.0 client
// credentials grant of the Microsoft identity platform, so that workloads
// call Azure Resource Manager, Storage, Key Vault, Microsoft Graph or an
// API of their own with no secret of their own.
//
// The gateway posts to {authority_host}/{tenant}/oauth2/v2.0/token with
// grant_type=client_credentials, client_id and scope=<resource>/.default,
// authenticating the application in one of three ways:
//
//   - client_secret: a client secret's value, read from another
//     credential of the policy (Vault, a file): providers compose by
//     reference, a policy file is not a secret store;
//   - client_certificate: a certificate credential. The gateway signs a
//     client assertion (RS256 or PS256 through providers/jwtsign; header
//     x5t#S256 = the certificate's SHA-256 thumbprint; aud = the token
//     endpoint; iss = sub = the client ID; a random jti; nbf = now, exp =
//     now + 5 minutes). The certificate and its key come from a PEM file or
//     another credential (the key may also be a Vault transit key), read
//     at every token request so that a rotated certificate is picked up;
//   - federated: workload identity federation. The client assertion is
//     the calling workload's own token, the one its jwt (or kubernetes)
//     identity factor verified; Entra checks it against a federated
//     identity credential (issuer, subject, audience) of the application.
//     Each workload gets its own token, kept no longer than the workload
//     token it was issued for.
//
// Or, with no application at all, managed_identity: a managed identity of
// the Azure resource the gateway runs on (managed.go). On a VM or VM
// scale set (AKS nodes included) the gateway asks the Instance Metadata
// Service, GET http://169.254.169.254/metadata/identity/oauth2/token
// with Metadata: true; on App Service, Functions and Container Apps the
// local endpoint IDENTITY_ENDPOINT, with the X-IDENTITY-HEADER secret
// App Service puts in IDENTITY_HEADER.
//
// The credential has providers.FieldToken, for the bearer injector.
//
// # Settings
//
//	provider: azure
//	tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47   # directory (tenant) ID or verified domain
//	client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
//	resource: https://storage.azure.com           # scope = resource + "/.default"
//	# scope: https://graph.microsoft.com/.default # instead of resource
//	authority_host: public                        # public, usgov, china, or https://login.example
//	client_secret: {credential: entra-secret}     # field: default token
//	# client_certificate: {file: /run/secrets/app.pem}   # cert and key in one PEM
//	# client_certificate:
//	#   credential: app-cert                      # fields certificate and private_key
//	#   private_key: {transit: {...}}             # or a key kept apart
//	# federated: {factor: jwt}                    # the workload's verified token
//	# managed_identity: {}                        # instead of tenant, client_id and the above:
//	# managed_identity: {client_id: GUID}         # the host's system-assigned or a user-assigned identity
//	ca_cert: /etc/ssl/extra.pem
//	timeout: 10s
package azure

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/backoff"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Name is the provider's registered name.
const Name = "azure"

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "Microsoft Entra ID access tokens (client credentials: client secret, certificate assertion or workload identity federation)",
		SettingDocs: map[string]string{
			"tenant":             "the directory (tenant) ID or a verified domain of the application",
			"client_id":          "the application (client) ID",
			"resource":           "the resource (application ID URI) the token is for; the scope is resource + /.default",
			"scope":              "instead of resource: the scope, ending in /.default",
			"authority_host":     "public (default, login.microsoftonline.com), usgov (login.microsoftonline.us), china (login.chinacloudapi.cn) or an https URL",
			"client_secret":      "another credential holding a client secret's value: {credential: NAME, field: token}",
			"client_certificate": "a certificate credential: {file: PEM} or {credential: NAME}, with private_key (jwtsign) when the key is kept apart",
			"federated":          "workload identity federation: {factor: jwt} presents the caller's verified token as the client assertion",
			"managed_identity":   "instead of an app registration: the managed identity of the Azure resource the gateway runs on ({} system-assigned, or one of client_id, object_id, msi_res_id; source auto, imds or app_service; endpoint for tests)",
			"ca_cert":            "PEM roots for the token endpoint instead of the system roots",
			"timeout":            "bound on each token request",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Authority hosts of the Azure clouds (authority_host: public, usgov,
// china).
var authorityHosts = map[string]string{
	"public": "https://login.microsoftonline.com",
	"usgov":  "https://login.microsoftonline.us",
	"china":  "https://login.chinacloudapi.cn",
}

// Defaults and constants.
const (
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	DefaultTimeout       = 10 * time.Second
	// AssertionLifetime is the lifetime of a certificate client
	// assertion (Entra accepts up to about an hour; short is safer).
	AssertionLifetime = 5 * time.Minute
	// AssertionType is client_assertion_type for both assertion modes.
	AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// DefaultTokenLifetime is the lifetime of an Entra token answer
	// without expires_in (Entra always sends it): the shortest of the
	// 60 to 90 minutes Entra documents for an access token's default
	// lifetime, less a second.
	DefaultTokenLifetime = 3599 * time.Second
	// expiryMargin is how much earlier than Entra says a token is treated
	// as expired (clock skew, transit time).
	expiryMargin = time.Minute
	// retries is how many times a transient failure (5xx, 429, timeout,
	// connection refused) is retried within one fetch.
	retries = 2
	maxBody = 1 << 20
)

// Modes of client authentication.
const (
	ModeSecret      = "client_secret"
	ModeCertificate = "client_certificate"
	ModeFederated   = "federated"
	ModeManaged     = "managed_identity"
)

// Provider is the "azure" provider. Its exported fields are its settings;
// see the package documentation.
type Provider struct {
	// Tenant is the directory (tenant) ID or a verified domain. Required;
	// common, organizations and consumers are refused (the client
	// credentials grant needs one tenant).
	Tenant string `yaml:"tenant"`
	// ClientID is the application (client) ID. Required.
	ClientID string `yaml:"client_id"`
	// Resource is the resource's application ID URI; the scope requested
	// is Resource + "/.default". Set it or Scope.
	Resource string `yaml:"resource"`
	// Scope is the scope requested, ending in /.default.
	Scope string `yaml:"scope"`
	// AuthorityHost is public (default), usgov, china or an https URL.
	AuthorityHost string `yaml:"authority_host"`
	// ClientSecret is where a client secret's value comes from.
	ClientSecret *SecretRef `yaml:"client_secret"`
	// ClientCertificate is a certificate credential of the application.
	ClientCertificate *Certificate `yaml:"client_certificate"`
	// Federated presents the workload's verified token as the assertion.
	Federated *Federated `yaml:"federated"`
	// ManagedIdentity gets the token of a managed identity of the Azure
	// resource the gateway runs on, instead of an app registration's.
	ManagedIdentity *ManagedIdentity `yaml:"managed_identity"`
	// CACert is a PEM file of roots for the token endpoint, instead of the
	// system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each token request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	providers.InputSet `yaml:"-"`

	mode     string
	tokenURL string
	scope    string // the requested scope
	cache    string // the cache scope of the settings
	signer   jwtsign.Signer
	client   *http.Client
	now      func() time.Time

	// Managed identity state (managed.go).
	miSource   string           // imds or app_service, auto resolved
	miURL      string           // the token endpoint, without query
	miHeader   providers.Secret // App Service's IDENTITY_HEADER
	miResource string           // resource sent
	retryBase  time.Duration    // the first backoff of a retry; tests shorten it
}

// SecretRef names another credential of the policy holding a secret.
type SecretRef struct {
	// Credential names the credential. Required.
	Credential string `yaml:"credential"`
	// Field is its field. Default "token".
	Field string `yaml:"field"`
}

// Certificate is a certificate credential: the certificate (PEM, the
// leaf first) and its private key.
type Certificate struct {
	// File is a PEM file holding the certificate, and the key unless
	// PrivateKey says otherwise. Read at every token request.
	File string `yaml:"file"`
	// Credential names another credential holding the certificate (and by
	// default the key): fields certificate and private_key (tlsclient's
	// names, as vault-pki issues them).
	Credential string `yaml:"credential"`
	// Field is the credential's field holding the certificate. Default
	// "certificate", then "token".
	Field string `yaml:"field"`
	// PrivateKey is the certificate's key through providers/jwtsign (a PEM
	// file, another credential, a Vault transit key). Default: the same
	// file, or the same credential's private_key field. Its algorithm is
	// RS256 (default) or PS256.
	PrivateKey jwtsign.KeySource `yaml:"private_key"`
}

// Federated selects the workload token presented as a federated
// assertion.
type Federated struct {
	// Factor is the kind of the verified factor whose token is presented:
	// jwt or kubernetes. Default: the first verified factor carrying a
	// token.
	Factor string `yaml:"factor"`
}

// tenantRe is a tenant ID (GUID) or a domain name. Compiled on first
// use, as the other large patterns are: {0,254} makes a 25 KB program and
// 10 ms of start-up for every process, configured for Azure or not.
var tenantRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,254}[A-Za-z0-9])?$`)
})

// Provision applies defaults and prepares the client and signer. It reads
// nothing but ca_cert and contacts nothing.
func (p *Provider) Provision(context.Context) error {
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.AuthorityHost == "" {
		p.AuthorityHost = "public"
	}
	switch {
	case p.ClientSecret != nil:
		p.mode = ModeSecret
		if p.ClientSecret.Field == "" {
			p.ClientSecret.Field = providers.FieldToken
		}
	case p.ClientCertificate != nil:
		p.mode = ModeCertificate
		c := p.ClientCertificate
		if !c.PrivateKey.IsSet() && (c.File == "") != (c.Credential == "") {
			// The key sits beside the certificate: the same PEM file, or
			// the same credential's private_key field.
			c.PrivateKey.File, c.PrivateKey.Credential = c.File, c.Credential
		}
		if c.PrivateKey.Algorithm == "" {
			c.PrivateKey.Algorithm = jwtsign.RS256
		}
		if c.PrivateKey.IsSet() {
			s, err := jwtsign.New(c.PrivateKey, "client_certificate.private_key", jwtsign.FromInputs(p.Map))
			if err != nil {
				return fmt.Errorf("azure: %w", err)
			}
			p.signer = s
		}
	case p.Federated != nil:
		p.mode = ModeFederated
	case p.ManagedIdentity != nil:
		p.mode = ModeManaged
		p.provisionManaged()
	}
	host := p.AuthorityHost
	if h, ok := authorityHosts[strings.ToLower(host)]; ok {
		host = h
	}
	p.tokenURL = strings.TrimSuffix(host, "/") + "/" + p.Tenant + "/oauth2/v2.0/token"
	p.scope = p.Scope
	if p.Resource != "" {
		p.scope = p.Resource + "/.default"
	}
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("azure: %w", err)
	}
	p.client = c
	p.cache = providers.NewScope("azure").AddList("settings", []string{p.mode, p.tokenURL, p.ClientID, p.scope}).String()
	if p.mode == ModeManaged {
		kind, id := p.ManagedIdentity.idKind()
		p.cache = providers.NewScope("azure").AddList("settings", []string{p.mode, p.miSource, p.miURL, kind, id, p.miResource}).String()
	}
	return nil
}

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	n := 0
	for _, set := range []bool{p.ClientSecret != nil, p.ClientCertificate != nil, p.Federated != nil, p.ManagedIdentity != nil} {
		if set {
			n++
		}
	}
	if p.ManagedIdentity != nil && n == 1 {
		if err := p.validateManaged(); err != nil {
			return err
		}
		if (p.Resource == "") == (p.Scope == "") {
			return errors.New("azure: set resource (e.g. https://storage.azure.com) or scope (e.g. https://graph.microsoft.com/.default), exactly one")
		}
		if p.Resource != "" && (strings.HasSuffix(p.Resource, "/.default") || strings.ContainsAny(p.Resource, " \t")) {
			return fmt.Errorf("azure: resource %q must be an application ID URI without /.default", p.Resource)
		}
		if p.Scope != "" && (!strings.HasSuffix(p.Scope, "/.default") || strings.ContainsAny(p.Scope, " \t")) {
			return fmt.Errorf("azure: scope %q must be one resource followed by /.default (a managed identity token is for one resource)", p.Scope)
		}
		return nil
	}
	switch {
	case p.Tenant == "":
		return errors.New("azure: tenant is required: the directory (tenant) ID of the app registration (Entra admin center > App registrations > Overview)")
	case isMultiTenant(p.Tenant):
		return fmt.Errorf("azure: tenant %q is not a tenant: the client credentials grant needs the directory (tenant) ID or a verified domain", p.Tenant)
	case !tenantRe().MatchString(p.Tenant):
		return fmt.Errorf("azure: tenant %q is neither a GUID nor a domain name", p.Tenant)
	case p.ClientID == "":
		return errors.New("azure: client_id is required: the application (client) ID of the app registration")
	case strings.ContainsAny(p.ClientID, " /?#&"):
		return fmt.Errorf("azure: client_id %q is not an application ID", p.ClientID)
	case (p.Resource == "") == (p.Scope == ""):
		return errors.New("azure: set resource (e.g. https://storage.azure.com) or scope (e.g. https://graph.microsoft.com/.default), exactly one")
	case p.Scope != "" && (!strings.HasSuffix(p.Scope, "/.default") || strings.ContainsAny(p.Scope, " \t")):
		return fmt.Errorf("azure: scope %q must be one resource followed by /.default: the client credentials grant gets the application permissions granted to the app, not individual scopes", p.Scope)
	case p.Resource != "" && (strings.HasSuffix(p.Resource, "/.default") || strings.ContainsAny(p.Resource, " \t")):
		return fmt.Errorf("azure: resource %q must be an application ID URI without /.default (the gateway appends it)", p.Resource)
	case n != 1:
		return errors.New("azure: set exactly one of client_secret, client_certificate, federated (how the application authenticates) and managed_identity (no application: the identity of the Azure resource the gateway runs on)")
	}
	if _, ok := authorityHosts[strings.ToLower(p.AuthorityHost)]; !ok {
		if err := httpclient.CheckURL(p.AuthorityHost); err != nil {
			return fmt.Errorf("azure: authority_host is not public, usgov, china or an https URL: %w", err)
		}
		if u, _ := url.Parse(p.AuthorityHost); u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return fmt.Errorf("azure: authority_host %q must be a host URL without a path (the gateway adds /TENANT/oauth2/v2.0/token)", httpclient.Display(p.AuthorityHost))
		}
	}
	switch p.mode {
	case ModeSecret:
		if p.ClientSecret.Credential == "" {
			return errors.New("azure: client_secret needs credential: the name of another credential (vault, static) holding the secret's value")
		}
	case ModeCertificate:
		c := p.ClientCertificate
		if (c.File == "") == (c.Credential == "") {
			return errors.New("azure: client_certificate: set file (a PEM file) or credential (another credential), exactly one")
		}
		if c.Field != "" && c.Credential == "" {
			return errors.New("azure: client_certificate.field is set without client_certificate.credential")
		}
		if a := c.PrivateKey.Algorithm; a != jwtsign.RS256 && a != jwtsign.PS256 {
			return fmt.Errorf("azure: client_certificate.private_key.algorithm is %s; Entra accepts RS256 or PS256 certificate assertions (an RSA key)", a)
		}
		if err := c.PrivateKey.Validate("client_certificate.private_key"); err != nil {
			return fmt.Errorf("azure: %w", err)
		}
	case ModeFederated:
		if f := p.Federated.Factor; f != "" && f != "jwt" && f != "kubernetes" {
			return fmt.Errorf("azure: federated.factor %q is not jwt or kubernetes (the identity factors that carry a token)", f)
		}
	}
	return nil
}

func isMultiTenant(t string) bool {
	switch strings.ToLower(t) {
	case "common", "organizations", "consumers":
		return true
	}
	return false
}

// Inputs lists the credentials the client secret or certificate come
// from.
func (p *Provider) Inputs() []string {
	var in []string
	if p.ClientSecret != nil && p.ClientSecret.Credential != "" {
		in = append(in, p.ClientSecret.Credential)
	}
	if c := p.ClientCertificate; c != nil {
		if c.Credential != "" {
			in = append(in, c.Credential)
		}
		for _, k := range c.PrivateKey.Inputs() {
			if k != c.Credential {
				in = append(in, k)
			}
		}
	}
	return in
}

// CacheScope keys tokens by tenant, client, scope and authority; a
// federated token also by workload and by the presented token (its full
// SHA-256, never the token), so each workload gets its own token and a
// rotated workload token a new one.
func (p *Provider) CacheScope(req providers.Request) string {
	if p.mode != ModeFederated {
		return p.cache
	}
	tok, err := p.workloadToken(req)
	return providers.NewScope("azure").
		Add("settings", p.cache).
		Add("workload", req.Workload.DisplayName()).
		AddToken("token", tok, err).String()
}

// ReissueOnUnauthorized implements providers.Reissuer: an Entra token can
// be revoked (the app's permissions changed) before it expires.
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

// op names a fetch in errors.
func (p *Provider) op() string {
	if p.mode == ModeManaged {
		return p.miOp()
	}
	return fmt.Sprintf("azure: token for client %s in tenant %s (%s, %s)", p.ClientID, p.Tenant, p.scope, p.mode)
}

// Fetch returns an Entra access token.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	for attempt := 0; ; attempt++ {
		cred, retry, err := p.fetchOnce(ctx, req)
		if err == nil || !retry {
			return cred, err
		}
		maxRetries, base, limit := retries, 200*time.Millisecond, 2*time.Second
		if p.mode == ModeManaged {
			maxRetries, base, limit = miRetries, miRetryBase, miRetryLimit
		}
		if p.retryBase > 0 {
			base, limit = p.retryBase, p.retryBase
		}
		if ctx.Err() != nil || attempt >= maxRetries {
			if !errors.Is(err, providers.ErrUnavailable) {
				err = fmt.Errorf("%w: %w", err, providers.ErrUnavailable)
			}
			return nil, err
		}
		if werr := backoff.Wait(ctx, base, limit, attempt+1); werr != nil {
			return nil, err
		}
	}
}

// fetchOnce makes one token request; retry reports a transient failure.
func (p *Provider) fetchOnce(ctx context.Context, req providers.Request) (_ *providers.Credential, retry bool, _ error) {
	if p.mode == ModeManaged {
		return p.managedOnce(ctx)
	}
	form := url.Values{
		"grant_type": {"client_credentials"},
		"client_id":  {p.ClientID},
		"scope":      {p.scope},
	}
	switch p.mode {
	case ModeSecret:
		s, err := p.secret(ctx, req)
		if err != nil {
			return nil, errors.Is(err, providers.ErrUnavailable), fmt.Errorf("%s: client_secret: %w", p.op(), err)
		}
		form.Set("client_secret", s)
	case ModeCertificate:
		a, err := p.certificateAssertion(ctx, req)
		if err != nil {
			return nil, errors.Is(err, providers.ErrUnavailable), fmt.Errorf("%s: %w", p.op(), err)
		}
		form.Set("client_assertion_type", AssertionType)
		form.Set("client_assertion", a)
	case ModeFederated:
		f, err := p.workloadFactor(req)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", p.op(), err)
		}
		form.Set("client_assertion_type", AssertionType)
		form.Set("client_assertion", f.Token.Reveal())
		cred, retry, err := p.post(ctx, form)
		// The Entra token stands for the workload's: it is not kept
		// beyond the token it was issued for.
		if err == nil && !f.Expires.IsZero() && cred.Expiry.After(f.Expires) {
			cred.Expiry = f.Expires
		}
		return cred, retry, err
	}
	return p.post(ctx, form)
}

// secret reads the client secret from its input credential.
func (p *Provider) secret(ctx context.Context, req providers.Request) (string, error) {
	name := p.ClientSecret.Credential
	in := p.Map()[name]
	if in == nil {
		return "", fmt.Errorf("credential %q: the input credential was not provided", name)
	}
	r := req
	r.Credential = name
	c, err := in.Fetch(ctx, r)
	if err != nil {
		return "", fmt.Errorf("credential %q: %w", name, err)
	}
	s, ok := c.Field(p.ClientSecret.Field)
	if !ok {
		return "", fmt.Errorf("credential %q has no field %s holding the client secret; set client_secret.field", name, p.ClientSecret.Field)
	}
	return s.Reveal(), nil
}

// certificate reads the certificate's leaf.
func (p *Provider) certificate(ctx context.Context, req providers.Request) (*x509.Certificate, string, error) {
	c := p.ClientCertificate
	var data []byte
	var where string
	if c.File != "" {
		where = "client_certificate.file " + c.File
		b, err := providers.ReadFile(ctx, "client_certificate.file", "the certificate", c.File)
		if err != nil {
			return nil, where, err
		}
		data = b
	} else {
		where = fmt.Sprintf("client_certificate.credential %q", c.Credential)
		in := p.Map()[c.Credential]
		if in == nil {
			return nil, where, fmt.Errorf("%s: the input credential was not provided", where)
		}
		r := req
		r.Credential = c.Credential
		cred, err := in.Fetch(ctx, r)
		if err != nil {
			return nil, where, fmt.Errorf("%s: %w", where, err)
		}
		fields := []string{providers.FieldCertificate, providers.FieldToken}
		if c.Field != "" {
			fields = []string{c.Field}
		}
		for _, f := range fields {
			if s, ok := cred.Field(f); ok {
				data = []byte(s.Reveal())
				break
			}
		}
		if data == nil {
			return nil, where, fmt.Errorf("%s has no field %s holding the PEM certificate", where, strings.Join(fields, " or "))
		}
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, where, fmt.Errorf("%s holds no PEM CERTIFICATE block: give the certificate uploaded to the app registration, in PEM (convert a .cer/.pfx with openssl)", where)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, where, fmt.Errorf("%s: the certificate does not parse (%v); give an X.509 certificate in PEM", where, err)
		}
		return cert, where, nil
	}
}

// certificateAssertion signs the client assertion for the certificate.
func (p *Provider) certificateAssertion(ctx context.Context, req providers.Request) (string, error) {
	cert, where, err := p.certificate(ctx, req)
	if err != nil {
		return "", err
	}
	now := p.now()
	if now.After(cert.NotAfter) {
		return "", fmt.Errorf("%s: the certificate expired on %s; upload a new certificate to the app registration and give it here", where, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return "", fmt.Errorf("%s: the certificate's key is not RSA; Entra certificate credentials are RSA keys", where)
	}
	thumb := sha256.Sum256(cert.Raw)
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := map[string]any{
		"aud": p.tokenURL,
		"iss": p.ClientID,
		"sub": p.ClientID,
		"jti": hex.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(AssertionLifetime).Unix(),
	}
	a, err := p.signer.Sign(jwtsign.WithRequest(ctx, req), map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(thumb[:])}, claims)
	if err != nil {
		return "", fmt.Errorf("sign the client assertion: %w", err)
	}
	// A key that is not the certificate's would be refused by Entra as
	// AADSTS700027; say so here, naming both settings.
	if _, _, err := jwtsign.Verify(a, p.ClientCertificate.PrivateKey.Algorithm, cert.PublicKey); err != nil {
		return "", fmt.Errorf("%s: the private key is not the certificate's (its signature does not verify with the certificate's public key); give the key the certificate was issued for", where)
	}
	return a, nil
}

// workloadToken returns the caller's verified token for a federated
// assertion.
func (p *Provider) workloadToken(req providers.Request) (string, error) {
	f, err := p.workloadFactor(req)
	if err != nil {
		return "", err
	}
	return f.Token.Reveal(), nil
}

// workloadFactor returns the caller's verified factor whose token is the
// federated assertion.
func (p *Provider) workloadFactor(req providers.Request) (identity.Factor, error) {
	want := p.Federated.Factor
	for _, f := range req.Workload.Factors {
		if f.Token.IsZero() {
			continue
		}
		if want == "" || want == f.Kind {
			return f, nil
		}
	}
	if want != "" {
		return identity.Factor{}, fmt.Errorf("workload %s presented no verified %s token to present as the federated assertion; require the %s factor in the workload", req.Workload.DisplayName(), want, want)
	}
	return identity.Factor{}, fmt.Errorf("workload %s presented no verified token to present as the federated assertion (federated needs a jwt or kubernetes identity factor)", req.Workload.DisplayName())
}

// entraError is the error body of the Microsoft identity platform.
type entraError struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	Codes         []int  `json:"error_codes"`
	CorrelationID string `json:"correlation_id"`
}

// aadsts finds an AADSTS code in the answer: error_codes, else the
// description's "AADSTSnnnn:" prefix.
var aadstsRe = regexp.MustCompile(`AADSTS(\d{4,9})`)

func (e entraError) code() int {
	if len(e.Codes) > 0 {
		return e.Codes[0]
	}
	if m := aadstsRe.FindStringSubmatch(e.Description); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// idRe is a correlation ID (compiled on first use, as tenantRe).
var idRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-fA-F-]{8,64}$`) })

// post makes the token request.
func (p *Provider) post(ctx context.Context, form url.Values) (_ *providers.Credential, retry bool, _ error) {
	op := p.op()
	actx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, p.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	start := p.now()
	resp, err := p.client.Do(hreq)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, false, fmt.Errorf("%s: %w", op, cerr)
		}
		err, timeout := httpclient.DoError(err)
		if timeout {
			return nil, true, fmt.Errorf("%s: %s did not answer within %s (timeout); check the gateway's network path to it: %w", op, httpclient.Display(p.tokenURL), p.Timeout, providers.ErrUnavailable)
		}
		return nil, true, fmt.Errorf("%s: cannot reach %s (%v); check authority_host and the gateway's network path: %w", op, httpclient.Display(p.tokenURL), err, providers.ErrUnavailable)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, true, fmt.Errorf("%s: read the answer: %v: %w", op, err, providers.ErrUnavailable)
	}
	if resp.StatusCode == http.StatusOK {
		var out struct {
			AccessToken string          `json:"access_token"`
			TokenType   string          `json:"token_type"`
			ExpiresIn   json.RawMessage `json:"expires_in"`
		}
		if err := json.Unmarshal(data, &out); err != nil || out.AccessToken == "" {
			return nil, false, fmt.Errorf("%s: the answer (200) holds no access_token; check that authority_host is an Entra authority", op)
		}
		if out.TokenType != "" && !strings.EqualFold(out.TokenType, "Bearer") {
			return nil, false, fmt.Errorf("%s: token_type is %q, not Bearer", op, safe(out.TokenType))
		}
		life, present, err := providers.LifetimeSeconds("expires_in", out.ExpiresIn)
		if err != nil {
			return nil, false, fmt.Errorf("%s: the answer's %w", op, err)
		}
		if !present {
			life = DefaultTokenLifetime
		}
		exp := cacheExpiry(start, start.Add(life))
		return &providers.Credential{
			Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(out.AccessToken)},
			Expiry: exp,
		}, false, nil
	}
	var ee entraError
	_ = json.Unmarshal(data, &ee)
	ref := ""
	if idRe().MatchString(ee.CorrelationID) {
		ref = " (correlation ID " + ee.CorrelationID + ")"
	}
	status := resp.Status
	if code := ee.code(); code != 0 {
		status += fmt.Sprintf(" AADSTS%d", code)
	}
	if e := safe(ee.Error); e != "" {
		status += " " + e
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return nil, true, fmt.Errorf("%s: Entra answered %s%s; retry later: %w", op, status, ref, providers.ErrUnavailable)
	}
	fix := p.fix(ee, start, resp.Header.Get("Date"))
	return nil, false, fmt.Errorf("%s: Entra refused the request: %s%s: %s", op, status, ref, fix)
}

// safe keeps an OAuth error code only when it looks like one.
func safe(s string) string {
	if len(s) > 40 || strings.IndexFunc(s, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) >= 0 {
		return ""
	}
	return s
}

// fix says what to change for an Entra refusal, from its AADSTS code,
// without echoing Entra's description (which may repeat request values).
func (p *Provider) fix(ee entraError, sent time.Time, date string) string {
	switch ee.code() {
	case 7000215:
		return "the client secret is wrong: give the secret's Value (shown once when it was created), not its Secret ID, in the credential client_secret names"
	case 7000222:
		return "the client secret has expired: create a new secret under Certificates & secrets and store it in the credential client_secret names"
	case 700016:
		return fmt.Sprintf("no application %s in tenant %s: check client_id and tenant (the app may be registered in another tenant, or not consented there)", p.ClientID, p.Tenant)
	case 90002, 900023:
		return fmt.Sprintf("tenant %s was not found: check tenant and authority_host (a US Gov or China tenant needs authority_host usgov or china)", p.Tenant)
	case 700027, 700023, 700021, 50012:
		return "the certificate assertion was refused: upload the certificate (the public part of client_certificate) to the app registration under Certificates & secrets, and check that client_id is that app's"
	case 700024:
		msg := "the client assertion is outside its validity window: check the gateway's clock (NTP)"
		if d, err := http.ParseTime(date); err == nil {
			if skew := sent.Sub(d); skew > time.Minute || skew < -time.Minute {
				msg += fmt.Sprintf("; the gateway's clock is %s off Entra's", skew.Round(time.Second))
			}
		}
		return msg
	case 70021, 700211, 700212, 700213:
		return "no federated identity credential of the app matches the workload's token: add one (Certificates & secrets > Federated credentials) with the token's issuer, its subject, and audience api://AzureADTokenExchange (or the token's aud)"
	case 50027, 5002738:
		return "Entra could not validate the assertion: for federated, check that the token's issuer publishes its keys (OpenID discovery and JWKS reachable from Entra); for a certificate, check the key and algorithm"
	case 500011:
		return fmt.Sprintf("the resource of scope %s is not in tenant %s: check resource (its application ID URI) and that its service principal exists in the tenant", p.scope, p.Tenant)
	case 70011, 1002012:
		return "the scope is not valid: use resource (the application ID URI) or a scope ending in /.default"
	case 7000112:
		return "the application is disabled in the tenant: enable it (Enterprise applications > Properties)"
	case 53003:
		return "a Conditional Access policy blocked the application: exclude it or allow the gateway's location in that policy"
	case 7000218:
		return "Entra expected a client secret or assertion: check the client_secret or client_certificate settings"
	}
	switch ee.Error {
	case "invalid_client":
		return "the application's credential was refused (invalid_client): check client_id, the client secret or certificate, and that it is registered with the app"
	case "unauthorized_client":
		return "the application may not use this grant (unauthorized_client): check client_id and tenant, and that the app is enabled"
	case "invalid_scope":
		return "the scope is not valid (invalid_scope): use resource or a scope ending in /.default"
	}
	return "check tenant, client_id, the scope and the app registration; Entra's correlation ID identifies the failure in its sign-in logs"
}

// String describes the provider; it is what every fmt verb and slog print.
func (p *Provider) String() string {
	if p.mode == ModeManaged {
		return fmt.Sprintf("azure(managed identity %s, %s, %s)", p.miSource, p.ManagedIdentity.describe(), p.miResource)
	}
	return fmt.Sprintf("azure(tenant %s, client %s, %s, %s)", p.Tenant, p.ClientID, p.scope, p.mode)
}

// GoString implements fmt.GoStringer.
func (p *Provider) GoString() string { return p.String() }

// Format implements fmt.Formatter.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// CheckSources reports client_certificate's file and its private_key's
// file (or transit login) when they cannot be read now
// (providers.SourceChecker); a key read from the certificate's own file
// is reported once.
func (p *Provider) CheckSources() []providers.SourceProblem {
	if p.mode == ModeManaged {
		return p.checkManagedSources()
	}
	c := p.ClientCertificate
	if c == nil {
		return nil
	}
	var out []providers.SourceProblem
	// The key is in the certificate's file by default (Provision sets
	// private_key.file to it): the file then holds a secret, and its
	// mode is judged (providers.CheckSecretFile); a certificate alone
	// anyone may read.
	keyInFile := c.File != "" && (!c.PrivateKey.IsSet() || c.PrivateKey.File == c.File)
	switch {
	case keyInFile:
		out = append(out, providers.CheckSecretFile("azure", "client_certificate.file", c.File, "the PEM certificate and its private key")...)
	case c.File != "":
		if err := providers.CheckFile("azure: client_certificate.file", c.File, "the PEM certificate"); err != nil {
			out = append(out, providers.SourceProblem{Setting: "client_certificate.file", Err: err})
		}
	}
	if keyInFile {
		return out
	}
	return append(out, c.PrivateKey.CheckSources("azure", "client_certificate.private_key.")...)
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
