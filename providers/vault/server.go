package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/internal/backoff"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

// Server defaults, applied by Server.withDefaults.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultRetries      = 2
	DefaultRetryBackoff = 250 * time.Millisecond
	// DefaultServiceAccountTokenFile is where the credgate Helm chart
	// mounts the gateway's projected service-account token; it is the
	// default token_file of the kubernetes and jwt login methods.
	DefaultServiceAccountTokenFile = "/var/run/secrets/credgate/serviceaccount/token"

	maxRetryBackoff = 5 * time.Second
)

// Login methods (Auth.Method).
const (
	MethodToken      = "token"
	MethodAppRole    = "approle"
	MethodKubernetes = "kubernetes"
	MethodJWT        = "jwt"
)

// Server says which Vault server the gateway talks to and how it logs in.
// Nothing in it is read or contacted when a policy loads: files
// (ca_cert, token and secret_id files) are read at the first request.
// It is the `server:` mapping of every vault credential; several
// credentials can share one with a YAML anchor (`server: &vault {...}`,
// then `server: *vault`).
type Server struct {
	// Address is Vault's URL, e.g. https://vault.internal:8200. Default:
	// the VAULT_ADDR environment variable of the gateway.
	Address string `yaml:"address"`
	// Namespace is the Vault Enterprise / OpenBao namespace every request
	// (login included) is made in. Default: VAULT_NAMESPACE, else none.
	Namespace string `yaml:"namespace"`
	// CACert is a PEM file of roots for Vault's TLS certificate, instead
	// of the system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each HTTP request to Vault. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many times a request that failed because Vault was
	// unreachable, sealed, overloaded or answered 5xx is tried again.
	// Default 2; 0 disables retries.
	Retries *int `yaml:"retries"`
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further retry (at most 5s), with random jitter. Default 250ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// Auth says how the gateway logs in.
	Auth Auth `yaml:"auth"`
}

// Auth is the gateway's login to Vault. Method picks the other fields
// that apply: token (token_file or token_env), approle (role_id or
// role_id_file, secret_id_file, secret_id_wrapped), kubernetes and jwt
// (role, token_file).
type Auth struct {
	// Method is token, approle, kubernetes or jwt. Required.
	Method string `yaml:"method"`
	// Mount is the path the auth method is enabled at. Default: the
	// method's name (approle, kubernetes, jwt). Not used by token.
	Mount string `yaml:"mount"`
	// TokenFile is, for token, a file holding a Vault token (for example
	// written by Vault Agent); for kubernetes and jwt, the file holding the
	// JWT presented at login (default DefaultServiceAccountTokenFile). It
	// is read again at every login, so a rotated file is picked up.
	TokenFile string `yaml:"token_file"`
	// TokenEnv is, for token, the environment variable holding the token.
	// Default VAULT_TOKEN when token_file is not set.
	TokenEnv string `yaml:"token_env"`
	// Role is the Vault role to log in as (kubernetes, jwt).
	Role string `yaml:"role"`
	// RoleID is the AppRole role_id (not a secret on its own).
	RoleID string `yaml:"role_id"`
	// RoleIDFile is a file holding the role_id, instead of RoleID.
	RoleIDFile string `yaml:"role_id_file"`
	// SecretIDFile is a file holding the AppRole secret_id: by default a
	// response-wrapping token that the gateway unwraps (once) at login.
	SecretIDFile string `yaml:"secret_id_file"`
	// SecretIDWrapped says whether SecretIDFile holds a wrapping token
	// (true, the default) or the plain secret_id (false).
	SecretIDWrapped *bool `yaml:"secret_id_wrapped"`
	// RenewIncrement is the TTL asked for at each renewal of the
	// gateway's token. Default: the TTL the token was created with (for
	// the token method, creation_ttl from auth/token/lookup-self).
	RenewIncrement time.Duration `yaml:"renew_increment"`
}

// withDefaults returns s with defaults applied and environment defaults
// read. It is the one place defaults are set.
func (s Server) withDefaults() Server {
	if s.Address == "" {
		s.Address = os.Getenv("VAULT_ADDR")
	}
	if s.Namespace == "" {
		s.Namespace = os.Getenv("VAULT_NAMESPACE")
	}
	s.Namespace = strings.Trim(s.Namespace, "/")
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Retries == nil {
		n := DefaultRetries
		s.Retries = &n
	}
	if s.RetryBackoff == 0 {
		s.RetryBackoff = DefaultRetryBackoff
	}
	a := &s.Auth
	if a.Mount == "" && a.Method != MethodToken {
		a.Mount = a.Method
	}
	a.Mount = strings.Trim(a.Mount, "/")
	switch a.Method {
	case MethodToken:
		if a.TokenFile == "" && a.TokenEnv == "" {
			a.TokenEnv = "VAULT_TOKEN"
		}
	case MethodKubernetes, MethodJWT:
		if a.TokenFile == "" {
			a.TokenFile = DefaultServiceAccountTokenFile
		}
	case MethodAppRole:
		if a.SecretIDWrapped == nil {
			t := true
			a.SecretIDWrapped = &t
		}
	}
	return s
}

// validate checks settings that have had their defaults applied. Error
// messages name the setting under server: and say what to change.
func (s Server) validate() error {
	if s.Address == "" {
		return errors.New("server.address is not set and VAULT_ADDR is empty; set server.address to Vault's URL, e.g. https://vault.internal:8200")
	}
	u, err := url.Parse(s.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server.address %q must be an http:// or https:// URL such as https://vault.internal:8200", s.Address)
	}
	// Vault tokens, secret_ids and secrets cross this connection: https,
	// or plain http to loopback only (a dev server or a local agent).
	if err := httpclient.CheckURL(s.Address); err != nil {
		if s.Address == os.Getenv("VAULT_ADDR") {
			return fmt.Errorf("server.address (here VAULT_ADDR of the gateway's environment) %w", err)
		}
		return fmt.Errorf("server.address %w", err)
	}
	switch {
	case s.Timeout < 0:
		return fmt.Errorf("server.timeout %s must be positive", s.Timeout)
	case *s.Retries < 0 || *s.Retries > 10:
		return fmt.Errorf("server.retries %d must be between 0 and 10", *s.Retries)
	case s.RetryBackoff < 0:
		return fmt.Errorf("server.retry_backoff %s must be positive", s.RetryBackoff)
	}
	a := s.Auth
	notFor := func(set bool, key string) error {
		if set {
			return fmt.Errorf("server.auth.%s does not apply to method %s; remove it", key, a.Method)
		}
		return nil
	}
	var errs []error
	switch a.Method {
	case "":
		return errors.New("server.auth.method is not set; use token (development), approle, kubernetes or jwt")
	case MethodToken:
		if a.TokenFile != "" && a.TokenEnv != "" {
			errs = append(errs, errors.New("server.auth: set only one of token_file and token_env"))
		}
		errs = append(errs, notFor(a.Mount != "", "mount"), notFor(a.Role != "", "role"),
			notFor(a.RoleID != "" || a.RoleIDFile != "", "role_id"), notFor(a.SecretIDFile != "" || a.SecretIDWrapped != nil, "secret_id_file"))
	case MethodAppRole:
		if (a.RoleID == "") == (a.RoleIDFile == "") {
			errs = append(errs, errors.New("server.auth: approle needs exactly one of role_id and role_id_file"))
		}
		if a.SecretIDFile == "" {
			errs = append(errs, errors.New("server.auth: approle needs secret_id_file (a file holding a response-wrapped secret_id)"))
		}
		errs = append(errs, notFor(a.Role != "", "role"), notFor(a.TokenFile != "", "token_file"), notFor(a.TokenEnv != "", "token_env"))
	case MethodKubernetes, MethodJWT:
		if a.Role == "" {
			errs = append(errs, fmt.Errorf("server.auth: %s needs role (the Vault role to log in as)", a.Method))
		}
		errs = append(errs, notFor(a.TokenEnv != "", "token_env"), notFor(a.RoleID != "" || a.RoleIDFile != "", "role_id"),
			notFor(a.SecretIDFile != "" || a.SecretIDWrapped != nil, "secret_id_file"))
	default:
		return fmt.Errorf("server.auth.method %q is not known; use token, approle, kubernetes or jwt", a.Method)
	}
	if a.RenewIncrement < 0 || (a.RenewIncrement > 0 && a.RenewIncrement < time.Second) {
		errs = append(errs, fmt.Errorf("server.auth.renew_increment %s must be at least 1s (write it as a duration such as 1h), or left out to renew for the token's creation TTL", a.RenewIncrement))
	}
	if strings.Contains(a.Mount, "..") {
		errs = append(errs, fmt.Errorf("server.auth.mount %q must not contain a .. segment", a.Mount))
	}
	return errors.Join(errs...)
}

// Client is the gateway's logged-in connection to one Vault server: it
// logs in lazily on first use, renews its token ahead of expiry in the
// background, logs in again when the token cannot be renewed or was
// revoked, and retries requests that failed because Vault was unavailable.
// It is safe for concurrent use. Close stops its background work.
//
// Providers in this package each own one Client; other providers (for
// example an OAuth2 provider signing client assertions with a transit key,
// see TransitSigner) can build their own with NewClient.
type Client struct {
	srv   Server
	clock clock
	http  *http.Client
	tr    *http.Transport

	// name is the provider name events are reported under, env where
	// they and log lines go.
	name string
	env  providers.Env

	// tlsMu guards loading server.ca_cert into tr, once, before the first
	// request (not at load time, so a policy validates on a machine
	// without the file).
	tlsMu    sync.Mutex
	tlsReady bool

	api *api.Client // without a token: each token has its own client

	// sent are the secret values this client has sent to Vault (tokens,
	// secret_id, JWTs, wrapping tokens), newest last, at most maxSent:
	// Vault's error messages are shown with each of them redacted, as a
	// server (or a proxy in front of it) may echo what it was sent.
	sentMu sync.Mutex
	sent   []string

	// sem serialises logins; a buffered channel so waiting honours ctx.
	sem chan struct{}

	mu      sync.Mutex
	tok     *token       // nil before the first login and after invalidation
	gen     uint64       // incremented at every login
	old     []*tokenLine // lines of replaced tokens, until they expire
	logins  int          // successful logins, to tell a login from a re-login
	started bool         // the renewer goroutine runs
	closed  bool         // Close was called: start no goroutine

	// secretID is the unwrapped AppRole secret_id and wrapSum the SHA-256
	// of the wrapping token it came from, so a new wrapping token written
	// to the file is unwrapped again. Both are guarded by sem.
	secretID providers.Secret
	wrapSum  [32]byte

	ctx    context.Context // cancelled by Close
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	wake   chan struct{}
}

// token is one login's token and its lifetime. A renewal replaces the
// Client's *token by an updated copy; copies share the login's line.
type token struct {
	value     providers.Secret
	api       *api.Client // holds value: requests made with this token
	line      *tokenLine
	gen       uint64
	ttl       time.Duration // from login or the last renewal; 0 = never expires
	loginTTL  time.Duration // the renewal increment (auth.renew_increment, else the creation TTL), also to see the max TTL approach
	renewable bool
	expires   time.Time // zero when ttl is 0
	next      time.Time // when the renewer next acts on it
}

// tokenLine is what the dynamic secrets a token read need to know about
// it: Vault revokes a token's leases when the token is revoked or
// expires, so a lease lives no longer than its parent token. It is shared
// by the copies of one token (and by logins that got the same token back:
// the token method re-reading an unchanged token).
type tokenLine struct {
	// ctx is done when the token is known to be dead (revoked, expired,
	// the client closed); the leases' contexts are its children.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	expires time.Time // zero: the token does not expire
}

// expiry returns when the token dies (zero: never, as far as known).
func (l *tokenLine) expiry() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

func (l *tokenLine) setExpiry(t time.Time) {
	l.mu.Lock()
	l.expires = t
	l.mu.Unlock()
}

// Errors a tokenLine ends with (context.Cause of the leases it read).
var (
	errTokenRevoked = errors.New("the gateway's Vault token was revoked, and the leases it created with it")
	errTokenExpired = errors.New("the gateway's Vault token expired, and the leases it created with it")
	errClientClosed = errors.New("the Vault client was closed")
)

// NewClient returns a Client for s. Defaults are applied and the settings
// checked; nothing is sent to Vault and no file is read until the first
// request.
func NewClient(s Server) (*Client, error) {
	return newClient(s, realClock{}, "vault", providers.Env{})
}

// newClient returns a Client reporting its events as provider name to env
// (zero fields: discarded).
func newClient(s Server, clk clock, name string, env providers.Env) (*Client, error) {
	s = s.withDefaults()
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	// Never send Vault traffic through HTTPS_PROXY: in a gateway's
	// environment that may well point at the gateway itself.
	tr := httpclient.NewTransport()
	env = providers.EnvFrom(providers.WithEnv(context.Background(), env)) // defaults
	c := &Client{
		srv:   s,
		clock: clk,
		name:  name,
		env:   env,
		tr:    tr,
		http: &http.Client{
			// vault/api follows one redirect itself (a standby's to the
			// active node), re-sending the token header and a login's
			// secret_id or JWT to wherever it points; Guard refuses every
			// redirect before vault/api sees it, and bounds the answers
			// vault/api reads whole.
			Transport:     httpclient.Guard(tr, 0),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:  make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	a, err := c.newAPI("")
	if err != nil {
		c.cancel(errClientClosed)
		return nil, err
	}
	c.api = a
	return c, nil
}

// newAPI returns a vault/api client for c's server holding token (none
// when ""). Environment variables the api package reads on its own
// (VAULT_TOKEN, VAULT_HEADERS, VAULT_NAMESPACE) are overridden: only the
// settings count.
func (c *Client) newAPI(tok string) (*api.Client, error) {
	a, err := api.NewClient(&api.Config{
		Address:    c.srv.Address,
		HttpClient: c.http,
		Timeout:    c.srv.Timeout,
		MaxRetries: 0, // Client.do retries, with its own classification
		// Never follow a redirect (Guard refuses them too).
		DisableRedirects: true,
	})
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", c.srv.Address, err)
	}
	h := http.Header{}
	h.Set("X-Vault-Request", "true")
	a.SetHeaders(h)
	a.SetNamespace(c.srv.Namespace)
	if tok == "" {
		a.ClearToken()
	} else {
		c.remember(tok)
		a.SetToken(tok)
	}
	return a, nil
}

// maxSent bounds Client.sent: the token in use, the one before it, a
// login's secret_id or JWT and a wrapping token, with room to spare.
const maxSent = 16

// remember adds secret values about to be sent to Vault to those its
// error messages are redacted of.
func (c *Client) remember(vals ...string) {
	c.sentMu.Lock()
	defer c.sentMu.Unlock()
	for _, v := range vals {
		if v == "" || slices.Contains(c.sent, v) {
			continue
		}
		if len(c.sent) == maxSent {
			c.sent = slices.Delete(c.sent, 0, 1)
		}
		c.sent = append(c.sent, v)
	}
}

// describe is describeRaw with every value the client has
// sent to Vault redacted from Vault's message.
func (c *Client) describe(err error) error {
	d := describeRaw(err)
	var ve *vaultError
	if !errors.As(d, &ve) {
		return d
	}
	c.sentMu.Lock()
	defer c.sentMu.Unlock()
	for _, v := range c.sent {
		ve.msg = strings.ReplaceAll(ve.msg, v, "[REDACTED]")
	}
	return d
}

// Close stops background token renewal. It does not revoke the token:
// leases the token created would be revoked with it. Credentials of
// leases read through c are withdrawn from the cache
// (providers.Credential.Revoked): nothing keeps them alive any more. It
// is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel(errClientClosed)
	c.wg.Wait()
	c.http.CloseIdleConnections()
	return nil
}

// errKind classifies a failed Vault request.
type errKind int

const (
	kindPermanent errKind = iota // bad request, not found, ...: do not retry
	kindTransient                // unreachable, sealed, 5xx, 429: retry, then ErrUnavailable
	kindForbidden                // 403: the token may have been revoked
	kindCanceled                 // the caller's context ended
)

func classify(ctx context.Context, err error) errKind {
	if ctx.Err() != nil {
		return kindCanceled
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusForbidden:
			return kindForbidden
		case re.StatusCode >= 500, re.StatusCode == http.StatusTooManyRequests, re.StatusCode == http.StatusPreconditionFailed:
			return kindTransient
		}
		return kindPermanent
	}
	var cv *tls.CertificateVerificationError
	var rd *httpclient.RedirectError
	if errors.As(err, &cv) || errors.As(err, &rd) || errors.Is(err, httpclient.ErrAnswerTooLarge) {
		// Misconfigured or broken, not down: retrying will not help.
		return kindPermanent
	}
	// Network errors, resets, EOF from a dying server.
	return kindTransient
}

// vaultError is a failed Vault request, described on one line: without
// the request body (which may hold a secret_id or JWT), without the
// multi-line text of *api.ResponseError, and with the line breaks of
// Vault's messages folded.
type vaultError struct {
	status int
	msg    string
	err    error
}

func (e *vaultError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("%s (HTTP %d)", e.msg, e.status)
	}
	return e.msg
}

func (e *vaultError) Unwrap() error { return e.err }

// describeRaw turns an error from vault/api into a vaultError, with
// Vault's messages as they came (Client.describe redacts them).
func describeRaw(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		var msgs []string
		for _, m := range re.Errors {
			msgs = append(msgs, foldMessage(m)...)
		}
		msg := strings.Join(msgs, "; ")
		if re.RawError {
			msg = "non-JSON answer: " + truncate(msg, 120)
		}
		if msg == "" {
			msg = strings.ToLower(http.StatusText(re.StatusCode))
		}
		return &vaultError{status: re.StatusCode, msg: msg, err: err}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// Drop the URL's method and address noise, keep the cause.
		return &vaultError{msg: fmt.Sprintf("%s %s: %v", ue.Op, httpclient.Display(ue.URL), ue.Err), err: err}
	}
	// Anything else (vault/api's own errors, a parse error quoting the
	// answer) is a vaultError too, so that Client.describe redacts what
	// was sent from it: a broken or hostile Vault can echo the token.
	return &vaultError{msg: truncate(strings.Join(strings.Fields(err.Error()), " "), 512), err: err}
}

// multiErr matches the heading go-multierror puts before its list ("1
// error occurred:", "2 errors occurred:"), as in Vault's answer to a
// policy refusal: "1 error occurred:\n\t* permission denied\n\n".
var multiErr = regexp.MustCompile(`^\d+ errors? occurred:\s*\*\s`)

// foldMessage returns one Vault error message as one-line messages:
// white space runs become one space, and a go-multierror list becomes
// its items.
func foldMessage(m string) []string {
	if loc := multiErr.FindStringIndex(m); loc != nil {
		var out []string
		for _, item := range strings.Split(m[loc[1]:], "\n\t* ") {
			out = append(out, foldMessage(item)...)
		}
		return out
	}
	if m = strings.Join(strings.Fields(m), " "); m != "" {
		return []string{m}
	}
	return nil
}

// isStatus reports whether err is a Vault answer with one of codes.
func isStatus(err error, codes ...int) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, c := range codes {
		if re.StatusCode == c {
			return true
		}
	}
	return false
}

// do runs one Vault operation (op names it in errors, e.g. "read
// secret/data/stripe") with the current token: it logs in first when there
// is no valid token, retries transient failures up to Retries times with
// jittered exponential backoff, and when Vault answers 403 because the
// token was revoked it logs in again and retries once. Errors start with
// "vault: OP: "; when Vault stayed unavailable they wrap
// providers.ErrUnavailable.
func (c *Client) do(ctx context.Context, op string, fn func(ctx context.Context, a *api.Client) (*api.Secret, error)) (*api.Secret, error) {
	sec, _, err := c.doToken(ctx, op, fn)
	return sec, err
}

// doToken is do that also returns the token the successful request was
// made with (a dynamic secret is that token's child in Vault). Each token
// has its own api.Client, so the token returned is the one Vault saw,
// even when a concurrent login replaced it meanwhile.
func (c *Client) doToken(ctx context.Context, op string, fn func(ctx context.Context, a *api.Client) (*api.Secret, error)) (*api.Secret, *token, error) {
	if err := c.loadCACert(); err != nil {
		return nil, nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	attempts := 1 + *c.srv.Retries
	relogged := false
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if err := backoff.Wait(ctx, c.srv.RetryBackoff, maxRetryBackoff, i); err != nil {
				return nil, nil, fmt.Errorf("vault: %s: %w after %d attempts: %w", op, c.describe(last), i, providers.ErrUnavailable)
			}
		}
		tok, err := c.token(ctx)
		if err != nil {
			if errors.Is(err, providers.ErrUnavailable) && ctx.Err() == nil {
				last = err
				continue
			}
			return nil, nil, fmt.Errorf("vault: %s: %w", op, err)
		}
		sec, err := fn(ctx, tok.api)
		if err == nil {
			return sec, tok, nil
		}
		switch classify(ctx, err) {
		case kindTransient:
			last = err
			continue
		case kindCanceled:
			return nil, nil, fmt.Errorf("vault: %s: %w: %w", op, context.Cause(ctx), providers.ErrUnavailable)
		case kindForbidden:
			if !relogged && c.tokenRejected(ctx, tok) {
				relogged = true
				c.invalidate(tok, errTokenRevoked)
				i-- // the re-login does not use up a retry
				continue
			}
		}
		return nil, nil, fmt.Errorf("vault: %s: %w", op, c.describe(err))
	}
	return nil, nil, fmt.Errorf("vault: %s: %w after %d attempts: %w", op, c.describe(last), attempts, providers.ErrUnavailable)
}

// loadCACert installs server.ca_cert as the roots for Vault's TLS
// certificate. It reads the file until it succeeds once.
func (c *Client) loadCACert() error {
	c.tlsMu.Lock()
	defer c.tlsMu.Unlock()
	if c.tlsReady || c.srv.CACert == "" {
		return nil
	}
	pool, err := httpclient.ReadRoots(c.srv.CACert)
	if err != nil {
		return fmt.Errorf("server.ca_cert: %w", err)
	}
	// No request has used the transport yet: every request passes here
	// first, and this is the only write.
	c.tr.TLSClientConfig.RootCAs = pool
	c.tlsReady = true
	return nil
}

// token returns a valid token, logging in when there is none or it has
// expired. Concurrent callers share one login.
func (c *Client) token(ctx context.Context) (*token, error) {
	if t := c.current(); t != nil {
		return t, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for login: %w: %w", context.Cause(ctx), providers.ErrUnavailable)
	}
	defer func() { <-c.sem }()
	if t := c.current(); t != nil { // someone else logged in meanwhile
		return t, nil
	}
	reason := ""
	c.mu.Lock()
	if c.logins > 0 {
		reason = "the token expired or was revoked"
	}
	c.mu.Unlock()
	return c.loginLocked(ctx, reason)
}

// current returns the token if it is valid for at least another second.
func (c *Client) current() *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tok
	if t == nil || (!t.expires.IsZero() && !c.clock.Now().Before(t.expires.Add(-time.Second))) {
		return nil
	}
	return t
}

// loginLocked logs in and installs the new token. c.sem is held. reason
// says why, for the log ("" for the first login).
func (c *Client) loginLocked(ctx context.Context, reason string) (*token, error) {
	event := eventLogin
	if reason != "" {
		event = eventRelogin
	}
	sent := c.clock.Now() // the token's TTL runs from no later than this
	lr, err := c.login(ctx)
	if err != nil {
		c.report(event, resultOf(ctx, err))
		return nil, err
	}
	a, err := c.newAPI(lr.token.Reveal())
	if err != nil {
		return nil, err
	}
	inc := lr.ttl
	switch {
	case c.srv.Auth.RenewIncrement > 0:
		inc = c.srv.Auth.RenewIncrement
	case lr.creationTTL > 0:
		inc = lr.creationTTL
	}
	c.mu.Lock()
	c.gen++
	t := &token{value: lr.token, api: a, gen: c.gen, ttl: lr.ttl, loginTTL: inc, renewable: lr.renewable}
	prev := c.tok
	// The same token again (the token method re-reading an unchanged
	// token): its leases are still its children, keep its line.
	if line := c.sameTokenLocked(lr.token); line != nil {
		t.line = line
	} else {
		lctx, cancel := context.WithCancelCause(c.ctx)
		t.line = &tokenLine{ctx: lctx, cancel: cancel}
		if prev != nil {
			c.old = append(c.old, prev.line)
		}
	}
	t.schedule(sent)
	c.tok = t
	c.logins++
	c.pruneLinesLocked(sent)
	start := !c.started && !c.closed && t.ttl > 0
	if start {
		c.started = true
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.renewLoop()
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	c.report(event, resultOK)
	attrs := []any{slog.String("method", c.srv.Auth.Method), slog.Duration("ttl", lr.ttl), slog.Bool("renewable", lr.renewable)}
	if reason != "" {
		c.env.Log.Info("vault: logged in again", append(attrs, slog.String("reason", reason))...)
	} else {
		c.env.Log.Info("vault: logged in", attrs...)
	}
	return t, nil
}

// sameTokenLocked returns the line of the current token if its value is
// v, or nil. c.mu is held.
func (c *Client) sameTokenLocked(v providers.Secret) *tokenLine {
	if c.tok != nil && c.tok.value.Reveal() == v.Reveal() {
		return c.tok.line
	}
	return nil
}

// pruneLinesLocked ends the lines of replaced tokens that have expired:
// Vault has revoked their leases. c.mu is held.
func (c *Client) pruneLinesLocked(now time.Time) {
	kept := c.old[:0]
	for _, l := range c.old {
		if e := l.expiry(); !e.IsZero() && !now.Before(e) {
			l.cancel(errTokenExpired)
			continue
		}
		kept = append(kept, l)
	}
	clear(c.old[len(kept):])
	c.old = kept
}

// currentLine returns the line of the token requests use now, or nil
// when there is none (the next request logs in).
func (c *Client) currentLine() *tokenLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == nil {
		return nil
	}
	return c.tok.line
}

// schedule sets t's expiry from its TTL counted from base (the time the
// request that returned the TTL was sent, so the expiry is never later
// than Vault's) and the renewer's next action at two thirds of it.
func (t *token) schedule(base time.Time) {
	t.expires, t.next = time.Time{}, time.Time{}
	if t.ttl > 0 {
		t.expires = base.Add(t.ttl)
		t.next = base.Add(t.ttl * 2 / 3)
	}
	t.line.setExpiry(t.expires)
}

// invalidate forgets t, which is known to be dead (cause says why), so
// the next request logs in again; the leases it created are withdrawn
// with it.
func (c *Client) invalidate(t *token, cause error) {
	c.mu.Lock()
	if c.tok != nil && c.tok.gen == t.gen {
		c.tok = nil
	}
	c.mu.Unlock()
	if t.line.ctx.Err() == nil {
		c.env.Log.Info("vault: the gateway's token is no longer valid; secrets read with it are dropped and the next request logs in again",
			slog.String("reason", cause.Error()))
	}
	t.line.cancel(cause)
}

// tokenRejected reports whether a 403 came from the token being invalid
// (revoked, expired early) rather than from a policy that does not allow
// the path: it asks Vault about the token itself. A token that was already
// replaced by a newer login counts as rejected (retry with the new one).
func (c *Client) tokenRejected(ctx context.Context, t *token) bool {
	c.mu.Lock()
	replaced := c.tok == nil || c.tok.gen != t.gen
	c.mu.Unlock()
	if replaced {
		return true
	}
	_, err := t.api.Auth().Token().LookupSelfWithContext(ctx)
	return isStatus(err, http.StatusForbidden, http.StatusUnauthorized)
}

// renewLoop renews the token at two thirds of its TTL and logs in again
// when renewal is refused or the token approaches its max TTL. It runs
// until Close.
func (c *Client) renewLoop() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		t := c.tok
		var at time.Time
		if t != nil {
			at = t.next
		}
		c.mu.Unlock()
		var fire <-chan time.Time
		stop := func() {}
		if !at.IsZero() {
			fire, stop = c.clock.TimerAt(at)
		}
		select {
		case <-c.ctx.Done():
			stop()
			return
		case <-c.wake:
			stop()
			continue
		case <-fire:
		}
		c.refresh(t)
	}
}

// refresh renews t or replaces it by a new login. Failures are retried
// later while t is still valid; once it expired, the next request logs in.
// A renewal asks for the token's creation TTL (not the TTL left when it
// was read), so a token picked up late is not renewed forever with a few
// seconds to spare.
func (c *Client) refresh(t *token) {
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.Timeout)
	defer cancel()
	reason := "the token is not renewable"
	if t.renewable {
		sent := c.clock.Now()
		sec, err := t.api.Auth().Token().RenewSelfWithContext(ctx, int(t.loginTTL.Seconds()))
		switch {
		case err == nil && sec != nil && sec.Auth != nil:
			ttl := providers.Seconds(sec.Auth.LeaseDuration)
			c.report(eventTokenRenewal, resultOK)
			if ttl >= t.loginTTL/3 {
				c.mu.Lock()
				if c.tok == t {
					nt := *t
					nt.ttl, nt.renewable = ttl, sec.Auth.Renewable
					nt.schedule(sent)
					c.tok = &nt
				}
				c.mu.Unlock()
				c.env.Log.Debug("vault: token renewed", slog.Duration("ttl", ttl))
				return
			}
			// Near the max TTL: log in again below. The old token lives
			// out its TTL; its leases are replaced before it dies.
			c.mu.Lock()
			if c.tok == t {
				nt := *t
				nt.ttl, nt.renewable = ttl, false
				nt.schedule(sent)
				c.tok = &nt
				t = &nt
			}
			c.mu.Unlock()
			reason = fmt.Sprintf("the token reaches its max TTL in %s", ttl)
		case err != nil && (classify(ctx, err) == kindPermanent || classify(ctx, err) == kindForbidden):
			c.report(eventTokenRenewal, resultRefused)
			reason = "token renewal refused: " + c.describe(err).Error()
			if isStatus(err, http.StatusForbidden) {
				// Revoked: so are the leases it created.
				c.invalidate(t, fmt.Errorf("%w (%s)", errTokenRevoked, reason))
			}
		case err != nil:
			c.report(eventTokenRenewal, resultError)
			c.env.Log.Warn("vault: token renewal failed; retrying", slog.Any("error", c.describe(err)))
			c.retryLater(t, c.clock.Now())
			return
		default:
			c.report(eventTokenRenewal, resultError)
			reason = "token renewal answered without auth"
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-c.sem }()
	c.mu.Lock()
	stale := c.tok != t && c.tok != nil
	c.mu.Unlock()
	if stale {
		return
	}
	if _, err := c.loginLocked(ctx, reason); err != nil {
		c.env.Log.Warn("vault: logging in again failed; retrying", slog.String("reason", reason), slog.Any("error", err))
		c.retryLater(t, c.clock.Now())
	}
}

// retryLater schedules another renewal attempt for t, well before it
// expires, or drops t if it has expired (Vault has revoked its leases).
func (c *Client) retryLater(t *token, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != t {
		return
	}
	left := t.expires.Sub(now)
	if left <= time.Second {
		c.tok = nil
		t.line.cancel(errTokenExpired)
		return
	}
	nt := *t
	nt.next = now.Add(min(left/3, 30*time.Second))
	c.tok = &nt
}

// revokeSelf revokes the client's token (used on cleanup when leases are
// revoked too; revoking the token revokes every lease it created). A
// token of the token method is not revoked: it was given to the gateway,
// which did not create it, and other credentials (or the operator) may
// use it.
func (c *Client) revokeSelf(ctx context.Context) error {
	c.mu.Lock()
	t := c.tok
	c.tok = nil
	c.mu.Unlock()
	if t == nil || c.srv.Auth.Method == MethodToken {
		return nil
	}
	defer t.line.cancel(errTokenRevoked)
	if err := t.api.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		c.report(eventTokenRevoke, resultOf(ctx, err))
		return fmt.Errorf("vault: revoke the gateway's token: %w", c.describe(err))
	}
	c.report(eventTokenRevoke, resultOK)
	c.env.Log.Info("vault: revoked the gateway's token on cleanup")
	return nil
}

// CheckSources reads now the files and the variable the login method
// reads at login (token_file or token_env for token, with VAULT_TOKEN by
// default; token_file for kubernetes and jwt, by default the chart's
// service-account token; role_id_file and secret_id_file for approle) and
// reports each that is missing, unreadable or empty, and as a warning each
// whose mode is loose (providers.CheckSecretFile; the kubernetes and jwt
// token_file as a token, providers.CheckTokenFile); prefix is the path
// of s's settings ("server."). Vault Agent or the kubelet may write a
// file after the gateway starts: the login then succeeds from then on.
func (s Server) CheckSources(prefix string) []providers.SourceProblem {
	a := s.withDefaults().Auth
	var out []providers.SourceProblem
	switch a.Method {
	case MethodToken:
		if a.TokenFile != "" {
			out = append(out, providers.CheckSecretFile("vault", prefix+"auth.token_file", a.TokenFile, "a Vault token")...)
		} else if err := providers.CheckEnv("vault: "+prefix+"auth.token_env", a.TokenEnv); err != nil {
			out = append(out, providers.SourceProblem{Setting: prefix + "auth.token_env", Err: err})
		}
	case MethodKubernetes, MethodJWT:
		// By default the pod's service-account token, 0644 as
		// Kubernetes mounts it: judged for write and owner only.
		if a.TokenFile != "" {
			out = append(out, providers.CheckTokenFile("vault", prefix+"auth.token_file", a.TokenFile, "the JWT presented at login")...)
		}
	case MethodAppRole:
		if a.RoleIDFile != "" {
			out = append(out, providers.CheckSecretFile("vault", prefix+"auth.role_id_file", a.RoleIDFile, "the AppRole role_id")...)
		}
		if a.SecretIDFile != "" {
			out = append(out, providers.CheckSecretFile("vault", prefix+"auth.secret_id_file", a.SecretIDFile, "the AppRole secret_id")...)
		}
	}
	return out
}
