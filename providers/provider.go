// Package providers defines where credentials come from: the Provider
// interface, the Credential and Secret types they return, a registry of
// provider modules keyed by the `provider:` field of a policy credential,
// and the cache that sits in front of every provider.
//
// Providers are public so that third parties can write them: a provider is
// one file with a type implementing Provider and an init function calling
// Register. providers never imports policy or injectors.
package providers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/identity"
)

// Well-known credential field names. Injectors read these; providers may
// add others.
const (
	FieldToken    = "token"
	FieldUsername = "username"
	FieldPassword = "password"
	// FieldCertificate, FieldPrivateKey and FieldCAChain are a TLS client
	// certificate (PEM), its private key (PEM) and the issuing chain
	// (PEM, the leaf's issuer first), for the tlsclient injector.
	FieldCertificate = "certificate"
	FieldPrivateKey  = "private_key"
	FieldCAChain     = "ca_chain"
	// FieldAccessKeyID, FieldSecretAccessKey and FieldSessionToken are AWS
	// credentials (an access key id, its secret key and, for temporary
	// credentials, the session token), for the sigv4 injector.
	FieldAccessKeyID     = "access_key_id"
	FieldSecretAccessKey = "secret_access_key"
	FieldSessionToken    = "session_token"
)

// ErrUnavailable marks a credential that cannot be obtained now (source
// down, sealed, throttled). The gateway answers 503 and never forwards.
var ErrUnavailable = errors.New("credential unavailable")

// ErrNotConfigured marks a credential that cannot be obtained until an
// operator changes the gateway's environment or configuration (an unset
// environment variable, a missing file): retrying will not help. The
// gateway answers 502 credential_not_configured without Retry-After and
// logs the error, so an error wrapping it names the setting to fix (never
// a value).
var ErrNotConfigured = errors.New("credential source not configured")

// Credential is a fetched credential. Treat it as immutable once returned:
// it may be shared between concurrent requests through the cache.
type Credential struct {
	// Fields are the secret parts by name (FieldToken, FieldUsername, ...).
	Fields map[string]Secret
	// Expiry is when the credential stops being valid; zero means it does
	// not expire (the cache then applies its configured TTL).
	Expiry time.Time
	// Hosts, when not empty, are the only destination hosts (names or
	// IP literals, lower case, no port) the credential may be sent to: a
	// token valid on one instance of a service, such as a Salesforce
	// access token and its instance_url. The gateway refuses a request to
	// any other host (403 credential_host_mismatch), even when the rule's
	// destination matches it. Empty means the rule's destination alone
	// decides. The Redis tier stores it with the fields.
	Hosts []string
	// Revoked, if set, is done when the provider learns that the
	// credential stopped being valid before Expiry (a Vault lease revoked
	// with its parent token, or its renewal refused); context.Cause says
	// why. The cache drops the credential at once then, so it is never
	// handed out again. It is not stored in a shared cache: a replica
	// that sees it done tells the others through Cache.Forget.
	Revoked context.Context
}

// revoked reports whether the provider said c is no longer valid.
func (c *Credential) revoked() bool {
	return c != nil && c.Revoked != nil && c.Revoked.Err() != nil
}

// AllowsHost reports whether the credential may be sent to host (as the
// gateway's destination: without port, case-insensitive): Hosts is empty
// or names it.
func (c *Credential) AllowsHost(host string) bool {
	if c == nil || len(c.Hosts) == 0 {
		return true
	}
	for _, h := range c.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// Field returns the named field and whether it is present and non-empty.
func (c *Credential) Field(name string) (Secret, bool) {
	if c == nil {
		return Secret{}, false
	}
	s, ok := c.Fields[name]
	return s, ok && !s.IsZero()
}

// Request says what credential is wanted and for whom.
type Request struct {
	// Credential is the credential's name in the policy.
	Credential string
	// Workload is the verified caller.
	Workload identity.Workload
}

// Provider fetches credentials. Implementations are safe for concurrent
// use; Fetch honours ctx cancellation and returns errors that name the
// operation but never contain a secret value.
type Provider interface {
	Fetch(ctx context.Context, req Request) (*Credential, error)
}

// Scoped is implemented by providers whose result depends on the caller.
// CacheScope returns the part of the cache key that distinguishes callers
// (for example the workload name); "" means one credential for everyone.
type Scoped interface {
	CacheScope(req Request) string
}

// Composer is implemented by providers whose inputs are other credentials
// of the same policy, named in their settings: an OAuth2 client secret or
// a source AWS key kept in Vault, say ("providers compose by reference").
// When the policy is loaded it checks that every input names a credential
// of the policy and that inputs form no cycle, then calls SetInputs once,
// before the first Fetch. A provider fetches an input when it needs it,
// passing its own Request with Credential set to the input's name; its
// own result is cached by the gateway, so inputs are fetched again only
// when it refreshes. A change to an input's definition changes the
// composer's cache version too.
type Composer interface {
	// Inputs lists the credential names the provider reads.
	Inputs() []string
	// SetInputs hands over a Provider for each name Inputs listed.
	SetInputs(inputs map[string]Provider)
}

// Reissuer is implemented by providers whose credentials an upstream can
// reject before they expire (an OAuth2 access token that was revoked, or
// forgotten by an authorization server that restarted). When
// ReissueOnUnauthorized returns true and an upstream answers 401 to a
// request that carried a cached credential of the provider, the gateway
// drops that credential from the cache, so the next request fetches a new
// one, and retries the request once with a new credential when the
// request is idempotent and has no body (or can replay it). Providers of
// long-lived keys do not implement it: a 401 there means the key is wrong,
// and fetching it again would only add load.
type Reissuer interface {
	ReissueOnUnauthorized() bool
}

// Provisioner is implemented by providers that set up clients or read
// files after their settings were decoded.
type Provisioner interface {
	Provision(ctx context.Context) error
}

// Validator is implemented by providers that check their settings.
type Validator interface {
	Validate() error
}

// CleanerUpper is implemented by providers holding resources (clients,
// goroutines, leases) that must be released when the policy that created
// them is replaced or the gateway stops.
type CleanerUpper interface {
	Cleanup() error
}

// InputSet holds the input providers a Composer was given, safe for
// concurrent use. Embed it: it implements Composer's SetInputs, and Map
// returns the inputs (for jwtsign.FromInputs, say).
type InputSet struct {
	mu sync.RWMutex
	m  map[string]Provider
}

// SetInputs implements Composer.
func (s *InputSet) SetInputs(inputs map[string]Provider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = inputs
}

// Map returns the inputs by credential name.
func (s *InputSet) Map() map[string]Provider {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m
}
