// Package githubapp is the "github-app" credential provider: it mints
// GitHub App installation access tokens, so that workloads call the GitHub
// REST and GraphQL APIs and git over HTTPS as the app, holding no token or
// key of their own.
//
// For each fetch it signs an app JWT (RS256, iat = now−60s, exp = now+9m,
// iss = the app ID or client ID) with the app's private key through
// providers/jwtsign (a PEM file, another credential, or a Vault transit
// key), finds the installation (installation_id, or a lookup by owner and
// repository with the JWT), and calls
// POST {base_url}/app/installations/{id}/access_tokens, with
// {"repositories": [...], "permissions": {...}} when the credential narrows
// the token. The credential has providers.FieldToken (the installation
// token, for the bearer injector) and username "x-access-token" with the
// token as password (for the basic injector, git over HTTPS). It expires at
// the token's expires_at (one hour), and the gateway's cache refreshes it
// ahead of that.
//
// # Settings
//
//	provider: github-app
//	app_id: 123456                  # or client_id: Iv23li...
//	private_key: {file: /run/secrets/github-app.pem}   # or credential: NAME, or transit: {...}
//	installation_id: 7890           # or owner: acme (and repo: widgets) to look it up
//	repositories: [widgets]         # optional narrowing, names without the owner
//	permissions: {contents: read}   # optional narrowing
//	base_url: https://github.example.com/api/v3   # GitHub Enterprise Server; default https://api.github.com
//	ca_cert: /etc/ssl/ghes-ca.pem   # roots for base_url, instead of the system's
//	timeout: 10s                    # each request to GitHub
//
// # Failures
//
// An installation or owner GitHub does not know (404) and a JWT GitHub
// rejects (401: wrong key, wrong app ID, the gateway's clock off) are
// errors that say what to check (502 credential_error). A scope the
// installation does not have (422) names the repositories and
// permissions asked for. GitHub unreachable, timing out, answering 5xx,
// 429 or a rate-limited 403 wraps providers.ErrUnavailable (503). No error
// contains a token, a JWT or the key.
package githubapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/endpoint"
	"github.com/credgate/credgate/providers/jwtsign"
)

// Name is the provider's registered name.
const Name = "github-app"

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "GitHub App installation tokens, narrowed to the repositories and permissions a credential names",
		SettingDocs: map[string]string{
			"app_id":          "the app's numeric ID; set app_id or client_id",
			"client_id":       "the app's client ID (Iv1.../Iv23...), accepted as the JWT's iss",
			"private_key":     "the app's RS256 key: file, credential or Vault transit (providers/jwtsign)",
			"installation_id": "the installation; when unset, looked up from owner (and repo)",
			"owner":           "organisation or user the app is installed on, for the lookup",
			"repo":            "a repository of owner, for the lookup",
			"repositories":    "narrow the token to these repositories (default: all of the installation)",
			"permissions":     "narrow the token to these permissions, e.g. contents: read",
			"base_url":        "REST API root; https://HOST/api/v3 for GitHub Enterprise Server",
			"ca_cert":         "PEM roots for base_url instead of the system roots",
			"timeout":         "bound on each request to GitHub (default 10s)",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Username is the Basic user name GitHub expects with an installation
// token for git over HTTPS.
const Username = "x-access-token"

// Defaults, applied by Provision.
const (
	DefaultBaseURL = "https://api.github.com"
	DefaultTimeout = 10 * time.Second
	// JWTBackdate is how far iat is set in the past, for clock drift
	// (GitHub's recommendation).
	JWTBackdate = 60 * time.Second
	// JWTLifetime is how far exp is set ahead; GitHub accepts at most 10
	// minutes.
	JWTLifetime = 9 * time.Minute
	// TokenLifetime is the lifetime GitHub documents for installation
	// tokens (an hour): what a mint answer without expires_at gets.
	// GitHub always sends expires_at.
	TokenLifetime = time.Hour
	// apiVersion is the REST API version requested.
	apiVersion = "2022-11-28"
	// maxRepositories is the most repositories a token request may name.
	maxRepositories = 500
)

// Provider is the "github-app" provider. Its exported fields are its
// settings; see the package documentation.
type Provider struct {
	// AppID is the app's numeric ID (the app's settings page, "App ID").
	// Set AppID or ClientID.
	AppID int64 `yaml:"app_id"`
	// ClientID is the app's client ID (Iv1.../Iv23...), which GitHub also
	// accepts as the JWT's iss.
	ClientID string `yaml:"client_id"`
	// PrivateKey is the app's private key (RS256): a PEM file, another
	// credential, or a Vault transit RSA key.
	PrivateKey jwtsign.KeySource `yaml:"private_key"`
	// InstallationID is the installation the token is for. When zero it
	// is looked up with Owner (and Repo).
	InstallationID int64 `yaml:"installation_id"`
	// Owner is the organisation or user the app is installed on, for the
	// lookup: GET /repos/{owner}/{repo}/installation when Repo is set,
	// else GET /orgs/{owner}/installation, then /users/{owner}/installation.
	Owner string `yaml:"owner"`
	// Repo is a repository of Owner the app is installed on, for the
	// lookup.
	Repo string `yaml:"repo"`
	// Repositories narrows the token to these repositories (names without
	// the owner). Empty: every repository of the installation.
	Repositories []string `yaml:"repositories"`
	// Permissions narrows the token to these permissions (e.g. contents:
	// read, pull_requests: write). Empty: every permission the app has.
	Permissions map[string]string `yaml:"permissions"`
	// BaseURL is the REST API root: https://api.github.com (default), or
	// https://HOST/api/v3 for GitHub Enterprise Server. It must be https
	// unless its host is a loopback address.
	BaseURL string `yaml:"base_url"`
	// CACert is a PEM file of roots for BaseURL's TLS certificate, instead
	// of the system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each request to GitHub. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	// runtime state, set by Provision and SetInputs.
	base   string
	client *http.Client
	signer jwtsign.Signer
	body   []byte // the access_tokens request body, nil when not narrowed
	scope  string
	now    func() time.Time

	providers.InputSet `yaml:"-"`

	// instMu guards inst, the installation ID found by a lookup.
	instMu sync.Mutex
	inst   int64
	// log is where ServerExpiry says a Date it did not trust (providers.Env).
	log *slog.Logger
}

// Provision applies defaults and prepares the HTTP client and signer. It
// reads and contacts nothing.
func (p *Provider) Provision(ctx context.Context) error {
	p.log = providers.EnvFrom(ctx).Log
	if p.BaseURL == "" {
		p.BaseURL = DefaultBaseURL
	}
	p.base = strings.TrimRight(p.BaseURL, "/")
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.PrivateKey.Algorithm == "" {
		p.PrivateKey.Algorithm = jwtsign.RS256
	}
	if p.PrivateKey.IsSet() {
		s, err := jwtsign.New(p.PrivateKey, "private_key", jwtsign.FromInputs(p.Map))
		if err != nil {
			return fmt.Errorf("github-app: %w", err)
		}
		p.signer = s
	}
	// internal/httpclient's client ignores the proxy environment (the
	// gateway's own calls never go through HTTPS_PROXY, which may be the
	// gateway itself) and follows no redirect: GitHub's token endpoints do
	// not redirect, and following one would send the app JWT elsewhere.
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("github-app: %w", err)
	}
	p.client = c
	if len(p.Repositories) > 0 || len(p.Permissions) > 0 {
		b := map[string]any{}
		if len(p.Repositories) > 0 {
			b["repositories"] = p.Repositories
		}
		if len(p.Permissions) > 0 {
			b["permissions"] = p.Permissions
		}
		p.body, _ = json.Marshal(b)
	}
	p.scope = p.scopeDigest()
	return nil
}

var (
	// namePattern is a GitHub account or repository name; "." and ".."
	// are refused apart (they would be path segments).
	namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	permPattern = regexp.MustCompile(`^[a-z_]+$`)
)

// validName reports whether s is a GitHub account or repository name.
func validName(s string) bool { return namePattern.MatchString(s) && s != "." && s != ".." }

// Validate checks the settings and says what to change.
func (p *Provider) Validate() error {
	switch {
	case p.AppID == 0 && p.ClientID == "":
		return errors.New("github-app: set app_id (the app's numeric ID) or client_id (its client ID); the app's settings page shows both")
	case p.AppID != 0 && p.ClientID != "":
		return errors.New("github-app: set app_id or client_id, not both")
	case p.AppID < 0:
		return fmt.Errorf("github-app: app_id %d is not a GitHub App ID", p.AppID)
	case !p.PrivateKey.IsSet():
		return errors.New("github-app: set private_key (file: PEM file, credential: NAME, or transit: a Vault transit RSA key) to the app's private key")
	case p.PrivateKey.Algorithm != jwtsign.RS256:
		return fmt.Errorf("github-app: private_key.algorithm is %s; GitHub App JWTs are RS256 only", p.PrivateKey.Algorithm)
	case p.InstallationID < 0:
		return fmt.Errorf("github-app: installation_id %d is not an installation ID", p.InstallationID)
	case p.InstallationID != 0 && (p.Owner != "" || p.Repo != ""):
		return errors.New("github-app: set installation_id, or owner (and repo) to look it up, not both")
	case p.InstallationID == 0 && p.Owner == "":
		return errors.New("github-app: set installation_id, or owner (an organisation or user, and optionally repo) to look the installation up")
	case p.Repo != "" && p.Owner == "":
		return errors.New("github-app: repo needs owner")
	case p.Owner != "" && !validName(p.Owner):
		return fmt.Errorf("github-app: owner %q is not a GitHub account name", p.Owner)
	case p.Repo != "" && !validName(p.Repo):
		return fmt.Errorf("github-app: repo %q is not a repository name (write it without the owner)", p.Repo)
	}
	if len(p.Repositories) > maxRepositories {
		return fmt.Errorf("github-app: repositories lists %d repositories; GitHub accepts at most %d per token (split them over several credentials)", len(p.Repositories), maxRepositories)
	}
	for _, r := range p.Repositories {
		if !validName(r) {
			return fmt.Errorf("github-app: repositories: %q is not a repository name; write names without the owner (the installation's account is the owner)", r)
		}
	}
	for k, v := range p.Permissions {
		if !permPattern.MatchString(k) {
			return fmt.Errorf("github-app: permissions: %q is not a GitHub App permission name (e.g. contents, issues, pull_requests)", k)
		}
		if v != "read" && v != "write" && v != "admin" {
			return fmt.Errorf("github-app: permissions: %s: %q is not read, write or admin", k, v)
		}
	}
	u, err := url.Parse(p.base)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("github-app: base_url %q is not an https URL (e.g. https://github.example.com/api/v3)", p.BaseURL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return errors.New("github-app: base_url must be a plain URL without credentials, query or fragment")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("github-app: base_url %q must use https (http only for a loopback host)", p.BaseURL)
	}
	if err := p.PrivateKey.Validate("private_key"); err != nil {
		return fmt.Errorf("github-app: %w", err)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Inputs lists the credential holding the private key, if any.
func (p *Provider) Inputs() []string { return p.PrivateKey.Inputs() }

// scopeDigest is a digest of every input that shapes the token: the
// API, the app, the installation (or its lookup), the repositories and
// permissions, in full (providers.Scope).
func (p *Provider) scopeDigest() string {
	repos := slices.Clone(p.Repositories)
	sort.Strings(repos)
	perms := make([]string, 0, len(p.Permissions))
	for k, v := range p.Permissions {
		perms = append(perms, k+"="+v)
	}
	sort.Strings(perms)
	return providers.NewScope("github-app").
		Add("base", p.base).
		Add("app_id", strconv.FormatInt(p.AppID, 10)).
		Add("client_id", p.ClientID).
		Add("installation_id", strconv.FormatInt(p.InstallationID, 10)).
		Add("owner", p.Owner).
		Add("repo", p.Repo).
		AddList("repositories", repos).
		AddList("permissions", perms).
		String()
}

// CacheScope keys tokens by API, app, installation, repositories and
// permissions; the token does not depend on the caller.
func (p *Provider) CacheScope(providers.Request) string { return p.scope }

// ReissueOnUnauthorized implements providers.Reissuer: an installation
// token can be revoked (DELETE /installation/token) before it expires.
func (p *Provider) ReissueOnUnauthorized() bool { return true }

// Cleanup releases the Vault client of a transit key, if any, and idle
// connections.
func (p *Provider) Cleanup() error {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	if c, ok := p.signer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Fetch mints an installation token.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	ctx = jwtsign.WithRequest(ctx, req)
	jwt, err := p.appJWT(ctx)
	if err != nil {
		return nil, err
	}
	id, looked, err := p.installation(ctx, jwt)
	if err != nil {
		return nil, err
	}
	cred, err := p.mint(ctx, jwt, id)
	if err != nil && looked && errors.Is(err, errNotFound) {
		// The app was reinstalled under a new ID: look it up again next time.
		p.instMu.Lock()
		if p.inst == id {
			p.inst = 0
		}
		p.instMu.Unlock()
	}
	return cred, err
}

// errNotFound marks a 404 from GitHub.
var errNotFound = errors.New("not found")

// appJWT signs the app JWT.
func (p *Provider) appJWT(ctx context.Context) (string, error) {
	if p.signer == nil {
		return "", errors.New("github-app: no private_key is configured")
	}
	now := p.now()
	var iss any = p.ClientID
	if p.AppID != 0 {
		iss = p.AppID
	}
	claims := map[string]any{
		"iat": now.Add(-JWTBackdate).Unix(),
		"exp": now.Add(JWTLifetime).Unix(),
		"iss": iss,
	}
	jwt, err := p.signer.Sign(ctx, nil, claims)
	if err != nil {
		return "", fmt.Errorf("github-app: sign the app JWT for %s: %w", p.app(), err)
	}
	return jwt, nil
}

// app names the app in messages.
func (p *Provider) app() string {
	if p.AppID != 0 {
		return fmt.Sprintf("app %d", p.AppID)
	}
	return fmt.Sprintf("app %s", p.ClientID)
}

// installation returns the installation ID, looking it up when it is not
// configured (once; the result is kept until GitHub says it is gone).
func (p *Provider) installation(ctx context.Context, jwt string) (id int64, looked bool, err error) {
	if p.InstallationID != 0 {
		return p.InstallationID, false, nil
	}
	p.instMu.Lock()
	id = p.inst
	p.instMu.Unlock()
	if id != 0 {
		return id, true, nil
	}
	paths := []string{"/orgs/" + p.Owner + "/installation", "/users/" + p.Owner + "/installation"}
	what := "owner " + p.Owner
	if p.Repo != "" {
		paths = []string{"/repos/" + p.Owner + "/" + p.Repo + "/installation"}
		what = "repository " + p.Owner + "/" + p.Repo
	}
	for _, path := range paths {
		var out struct {
			ID int64 `json:"id"`
		}
		_, err = p.call(ctx, http.MethodGet, path, jwt, nil, http.StatusOK, &out)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return 0, true, fmt.Errorf("github-app: look up the installation of %s on %s: %w", p.app(), what, err)
		}
		if out.ID <= 0 {
			return 0, true, fmt.Errorf("github-app: look up the installation of %s on %s: the answer has no installation id", p.app(), what)
		}
		p.instMu.Lock()
		p.inst = out.ID
		p.instMu.Unlock()
		return out.ID, true, nil
	}
	return 0, true, fmt.Errorf("github-app: %s is not installed on %s (GitHub answered 404 to GET %s): install the app there, or check owner/repo, app_id and base_url", p.app(), what, strings.Join(paths, " and "))
}

// mint calls POST /app/installations/{id}/access_tokens.
func (p *Provider) mint(ctx context.Context, jwt string, id int64) (*providers.Credential, error) {
	path := fmt.Sprintf("/app/installations/%d/access_tokens", id)
	var out struct {
		Token     string          `json:"token"`
		ExpiresAt json.RawMessage `json:"expires_at"`
	}
	sent := p.now()
	date, err := p.call(ctx, http.MethodPost, path, jwt, p.body, http.StatusCreated, &out)
	switch {
	case errors.Is(err, errNotFound):
		return nil, fmt.Errorf("github-app: installation %d of %s not found (GitHub answered 404 to POST %s): check installation_id (the number at the end of the installation's settings URL), that the app is still installed, and base_url", id, p.app(), path)
	case errors.Is(err, errScope):
		return nil, fmt.Errorf("github-app: installation %d of %s refused the requested scope (repositories %v, permissions %v): every repository must be one the installation can access and every permission at most what the app was granted: %w", id, p.app(), p.Repositories, p.Permissions, err)
	case err != nil:
		return nil, fmt.Errorf("github-app: mint a token for installation %d of %s: %w", id, p.app(), err)
	case out.Token == "":
		return nil, fmt.Errorf("github-app: mint a token for installation %d of %s: the answer has no token", id, p.app())
	}
	exp, err := p.expiry(out.ExpiresAt, date, sent)
	if err != nil {
		return nil, fmt.Errorf("github-app: mint a token for installation %d of %s: the answer's %w", id, p.app(), err)
	}
	tok := providers.NewSecret(out.Token)
	return &providers.Credential{
		Fields: map[string]providers.Secret{
			providers.FieldToken:    tok,
			providers.FieldUsername: providers.NewSecret(Username),
			providers.FieldPassword: tok,
		},
		Expiry: exp,
	}, nil
}

// expiry is when an installation token expires on the gateway's clock.
// expires_at is on GitHub's clock: counted from sent by the answer's
// Date, so that a gateway clock off GitHub's neither serves the token
// past its end nor takes it for expired. An answer without expires_at
// gets the hour GitHub documents for installation tokens; one that is
// not an RFC 3339 time, or is not after sent, is refused naming the
// field (providers.ErrBadLifetime), never kept for that hour.
func (p *Provider) expiry(raw json.RawMessage, date, sent time.Time) (time.Time, error) {
	if s := strings.TrimSpace(string(raw)); s == "" || s == "null" {
		return sent.Add(TokenLifetime), nil
	}
	var at time.Time
	if err := json.Unmarshal(raw, &at); err != nil {
		return time.Time{}, fmt.Errorf("expires_at is not an RFC 3339 time: %w: %w", providers.ErrBadLifetime, providers.ErrUnavailable)
	}
	exp := providers.ServerExpiry(p.log, "github-app "+p.base, at, date, sent)
	if err := providers.CheckExpiry("expires_at", exp, sent); err != nil {
		return time.Time{}, err
	}
	return exp, nil
}

// errScope marks a 422 (a scope the installation does not have).
var errScope = errors.New("422 Unprocessable Entity")

// call makes one request to GitHub with the app JWT and decodes a JSON
// answer of status want into out, returning the answer's Date
// (providers.AnswerDate).
// Errors name the status and never carry the answer's body (which could
// echo what was sent).
func (p *Provider) call(ctx context.Context, method, path, jwt string, body []byte, want int, out any) (date time.Time, err error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return time.Time{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", apiVersion)
	req.Header.Set("User-Agent", "credgate")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, data, err := endpoint.Do(p.client, req)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %s%s: %w", method, p.base, path, err)
	}
	switch s := resp.StatusCode; {
	case s == want:
	case s == http.StatusNotFound:
		return time.Time{}, errNotFound
	case s == http.StatusUnauthorized:
		return time.Time{}, fmt.Errorf("GitHub rejected the app JWT (401 to %s %s): check that private_key is the key of %s, that app_id/client_id is right, and that the gateway's clock is correct (GitHub checks iat and exp within 10 minutes)", method, path, p.app())
	case s == http.StatusUnprocessableEntity:
		return time.Time{}, errScope
	case endpoint.Unavailable(s) ||
		(s == http.StatusForbidden && (resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "")):
		return time.Time{}, fmt.Errorf("%s %s: GitHub answered %s: %w", method, path, resp.Status, providers.ErrUnavailable)
	case s == http.StatusForbidden:
		return time.Time{}, fmt.Errorf("%s %s: GitHub answered 403 Forbidden: the app may be suspended or lack access", method, path)
	default:
		return time.Time{}, fmt.Errorf("%s %s: GitHub answered %s", method, path, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return time.Time{}, fmt.Errorf("%s %s: the answer is not the JSON GitHub sends: %w", method, path, err)
	}
	return providers.AnswerDate(resp.Header), nil
}

// String describes the provider by app, installation and API; it is what
// every fmt verb and slog print (runtime state is never printed).
func (p *Provider) String() string {
	inst := strconv.FormatInt(p.InstallationID, 10)
	if p.InstallationID == 0 {
		inst = p.Owner
		if p.Repo != "" {
			inst += "/" + p.Repo
		}
	}
	return fmt.Sprintf("github-app(%s, installation %s, %s)", p.app(), inst, p.base)
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
	return p.PrivateKey.CheckSources("github-app", "private_key.")
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
