// Package vault holds the HashiCorp Vault (and OpenBao) credential
// providers, built on github.com/hashicorp/vault/api:
//
//   - "vault" reads a secret: a KV v2 (or v1) entry, or a dynamic secret
//     (database, cloud and other engines) whose lease it renews and
//     revokes;
//   - "vault-pki" issues a short-lived client certificate from a PKI role,
//     for outbound mTLS;
//   - TransitSigner signs JWTs (OAuth2 private_key_jwt client assertions,
//     GitHub App JWTs) with a transit key that never leaves Vault; other
//     providers use it from Go.
//
// # Settings of "vault"
//
//	provider: vault
//	server:                         # see Server; share it with a YAML anchor
//	  address: https://vault.internal:8200
//	  auth: {method: kubernetes, role: credgate}
//	path: secret/data/stripe        # the API path to read; may be templated
//	field: secret_key               # optional: this one value becomes the token field
//	version: 3                      # optional: pin a KV v2 version
//	ttl: 5m                         # optional: cache a non-leased secret this long
//	revoke_on_cleanup: false        # revoke leases when the provider is cleaned up
//
// path is the HTTP API path without /v1/, so a KV v2 secret is
// MOUNT/data/NAME (secret/data/stripe), a database credential is
// database/creds/ROLE. It may contain {{.workload.name}} (the caller's
// workload name) and {{.workload.ATTR}} (an attribute of one of the
// caller's verified factors, such as namespace or service_account);
// substituted values must match [A-Za-z0-9._-]+ and may not contain "..",
// so a caller cannot move the read to another path. A templated path
// makes the provider Scoped: each rendered path is cached on its own.
//
// # Fields
//
// With field set, the credential has the one field providers.FieldToken.
// Without it, every string (or number or boolean) value of the secret
// becomes a field of the same name: a database engine's username and
// password (providers.FieldUsername, providers.FieldPassword), an AWS
// engine's access_key, secret_key and security_token, a KV entry's keys.
// KV v2 answers are unwrapped (the fields are the entry's keys, not
// "data" and "metadata").
//
// # Expiry, renewal, revocation
//
// A secret without a lease (KV) expires after ttl (zero: the cache's
// default TTL), so a new KV version is picked up within ttl. A secret with
// a lease is the child of the gateway token that read it: Vault revokes
// it when that token dies. Its credential expires at the earliest of the
// lease's end, that token's death and the end of the renewal interval (two
// thirds of the lease duration after Vault last vouched for it); the
// cache's refresh then renews the lease (same secret, new interval), or
// reads a fresh one when the gateway logged in again since, the lease
// cannot be renewed or reached its max TTL. A refused renewal, or the
// token found revoked, withdraws the credential at once
// (providers.Credential.Revoked): a secret Vault revoked is handed out for
// at most one renewal interval. With revoke_on_cleanup the leases still
// valid are revoked (sys/leases/revoke; the gateway's Vault policy must
// allow it) and the gateway's own token too (except a token given with
// the token method), when the provider is cleaned up.
//
// Logins, renewals, refusals and revocations are logged and reported to
// the providers.EventObserver of the Provision context's providers.Env.
//
// # Failures
//
// Vault unreachable, sealed, answering 5xx or 429: each request is retried
// (server.retries, jittered exponential backoff) and then fails with an
// error wrapping providers.ErrUnavailable, so the gateway answers 503.
// Other errors (permission denied, no such path, missing field) are plain
// errors (502). No error contains a secret value, token, secret_id or JWT.
package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{
		Name: "vault",
		Doc:  "HashiCorp Vault / OpenBao: KV secrets and dynamic secrets, leases renewed and revoked",
		SettingDocs: map[string]string{
			"server":            "the Vault server and the gateway's login to it",
			"path":              "the API path to read (without /v1/), e.g. secret/data/stripe; may be templated",
			"field":             "the one value of the secret that becomes the token field",
			"version":           "pin a KV v2 version",
			"ttl":               "how long a secret without a lease is cached",
			"revoke_on_cleanup": "revoke the leases and the gateway's token when the policy is replaced",
		},
		New: func() providers.Provider { return new(Provider) },
	})
	providers.Register(providers.Module{
		Name: "vault-pki",
		Doc:  "HashiCorp Vault PKI: short-lived TLS client certificates",
		SettingDocs: map[string]string{
			"server":            "the Vault server and the gateway's login to it",
			"mount":             "where the PKI engine is enabled",
			"role":              "the PKI role to issue from",
			"common_name":       "the certificate's CN; may be templated",
			"alt_names":         "extra DNS or email SANs; each may be templated",
			"uri_sans":          "URI SANs (such as a SPIFFE ID); each may be templated",
			"ttl":               "the certificate lifetime requested (0: the role's)",
			"revoke_on_cleanup": "revoke issued certificates' leases and the gateway's token on cleanup",
		},
		New: func() providers.Provider { return new(PKIProvider) },
	})
}

// cleanupTimeout bounds the revocations done by Cleanup.
const cleanupTimeout = 15 * time.Second

// Provider is the "vault" provider: it reads a secret (KV or dynamic)
// from a path.
type Provider struct {
	// Server is the Vault server and the gateway's login to it.
	Server Server `yaml:"server"`
	// Path is the API path to read (without /v1/), e.g. secret/data/stripe
	// or database/creds/{{.workload.name}}-ro. Required.
	Path string `yaml:"path"`
	// Field, if set, names the one value of the secret that becomes the
	// credential's token field.
	Field string `yaml:"field"`
	// Version pins a KV v2 version (the path must be a KV v2 data path).
	// 0 reads the latest.
	Version int `yaml:"version"`
	// TTL is how long a secret without a lease is cached. 0 uses the
	// cache's default TTL.
	TTL time.Duration `yaml:"ttl"`
	// RevokeOnCleanup revokes the provider's leases, and the gateway's
	// token, when the provider is cleaned up (policy replaced, shutdown).
	RevokeOnCleanup bool `yaml:"revoke_on_cleanup"`

	clock  clock // nil: the wall clock
	client *Client
	path   template
	leases *leases
}

// Provision parses the path template and prepares the Vault client. It
// contacts nothing: login happens at the first Fetch.
func (p *Provider) Provision(ctx context.Context) error {
	if p.clock == nil {
		p.clock = realClock{}
	}
	t, err := parseTemplate("path", strings.Trim(p.Path, "/"))
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	p.path = t
	c, err := newClient(p.Server, p.clock, "vault", providers.EnvFrom(ctx))
	if err != nil {
		return err
	}
	p.client = c
	p.leases = newLeases(c, p.clock, true)
	return nil
}

// Validate checks the settings.
func (p *Provider) Validate() error {
	path := strings.Trim(p.Path, "/")
	switch {
	case path == "":
		return errors.New("vault: path is not set; set the API path to read, e.g. secret/data/stripe or database/creds/readonly")
	case strings.HasPrefix(path, "v1/"):
		return fmt.Errorf("vault: path %q: leave out the /v1/ prefix", p.Path)
	case slices.Contains(strings.Split(path, "/"), "..") || slices.Contains(strings.Split(path, "/"), "."):
		return fmt.Errorf("vault: path %q must not contain . or .. segments", p.Path)
	case p.Version < 0:
		return fmt.Errorf("vault: version %d must be positive (0 reads the latest)", p.Version)
	case p.Version > 0 && !isKV2Path(path):
		return fmt.Errorf("vault: version applies only to KV v2 paths (MOUNT/data/NAME); %q is not one", p.Path)
	case p.TTL < 0 || (p.TTL > 0 && p.TTL < time.Second):
		return fmt.Errorf("vault: ttl %s must be at least 1s (write it as a duration such as 5m)", p.TTL)
	}
	return nil
}

// isKV2Path reports whether path has a "data" segment after its mount.
func isKV2Path(path string) bool {
	segs := strings.Split(path, "/")
	return slices.Contains(segs[1:], "data") && segs[len(segs)-1] != "data"
}

// CacheScope implements providers.Scoped: with a templated path the scope
// is derived from the full rendered path (callers reading the same path
// share it); without, everyone shares one credential.
func (p *Provider) CacheScope(req providers.Request) string {
	if !p.path.templated() {
		return ""
	}
	return providers.NewScope("vault").AddTemplate("path", p.path.t, req.Workload, checkValue).String()
}

// Fetch reads the secret for the caller. A dynamic secret whose lease is
// still good is returned without asking Vault.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	path, err := p.path.render(req.Workload)
	if err != nil {
		return nil, fmt.Errorf("vault: path %s: %w", p.Path, err)
	}
	if cred := p.leases.reuse(ctx, path); cred != nil {
		return cred, nil
	}
	op := "read " + path
	var query map[string][]string
	if p.Version > 0 {
		op = fmt.Sprintf("read %s version %d", path, p.Version)
		query = map[string][]string{"version": {strconv.Itoa(p.Version)}}
	}
	sent := p.clock.Now() // a lease's TTL runs from no later than this
	sec, tok, err := p.client.doToken(ctx, op, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Logical().ReadWithDataWithContext(ctx, path, query)
	})
	if err != nil {
		return nil, err
	}
	if sec == nil {
		hint := ""
		if !isKV2Path(path) {
			hint = " (a KV v2 path has /data/ after the mount, e.g. secret/data/stripe)"
		}
		return nil, fmt.Errorf("vault: %s: no secret at this path%s", op, hint)
	}
	data, err := secretData(path, sec)
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	fields, err := p.fields(data)
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", op, err)
	}
	if sec.LeaseID != "" {
		if err := leaseLifetime(sec); err != nil {
			return nil, fmt.Errorf("vault: %s: %w", op, err)
		}
		return p.leases.add(path, sec, fields, tok, sent), nil
	}
	cred := &providers.Credential{Fields: fields}
	if p.TTL > 0 {
		cred.Expiry = p.clock.Now().Add(p.TTL)
	}
	return cred, nil
}

// leaseLifetime refuses a leased secret whose lease_duration is 0 or
// negative: the lease, and the secret with it, ended when it was
// issued. (A secret without a lease_id, such as a KV v1 or v2 read, is
// not leased: its lease_duration, 0 or KV v1's refresh hint, says
// nothing of its end, and ttl or cache.default_ttl applies.) It is
// never kept as if it were not leased.
func leaseLifetime(sec *api.Secret) error {
	if sec.LeaseDuration > 0 {
		return nil
	}
	return fmt.Errorf("the answer's lease_duration is %d for a leased secret: the lease ends on arrival (check the role's default_ttl and max_ttl): %w: %w",
		sec.LeaseDuration, providers.ErrBadLifetime, providers.ErrUnavailable)
}

// secretData returns the key/value data of sec, unwrapping a KV v2
// answer ({data: {data: {...}, metadata: {...}}}).
func secretData(path string, sec *api.Secret) (map[string]any, error) {
	if !isKV2Path(path) {
		return sec.Data, nil
	}
	meta, ok := sec.Data["metadata"].(map[string]any)
	inner, hasData := sec.Data["data"]
	if !ok || !hasData {
		return sec.Data, nil // not a KV v2 mount after all: a plain read
	}
	m, ok := inner.(map[string]any)
	if !ok || m == nil {
		return nil, fmt.Errorf("version %v is deleted or destroyed", meta["version"])
	}
	return m, nil
}

// fields turns secret data into credential fields.
func (p *Provider) fields(data map[string]any) (map[string]providers.Secret, error) {
	if p.Field != "" {
		v, ok := data[p.Field]
		if !ok {
			return nil, fmt.Errorf("the secret has no field %q (it has: %s)", p.Field, strings.Join(keys(data), ", "))
		}
		s, ok := scalar(v)
		if !ok {
			return nil, fmt.Errorf("field %q of the secret is not a string", p.Field)
		}
		if s == "" {
			return nil, fmt.Errorf("field %q of the secret is empty", p.Field)
		}
		return map[string]providers.Secret{providers.FieldToken: providers.NewSecret(s)}, nil
	}
	out := map[string]providers.Secret{}
	for k, v := range data {
		if s, ok := scalar(v); ok {
			out[k] = providers.NewSecret(s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the secret has no string values (keys: %s)", strings.Join(keys(data), ", "))
	}
	return out, nil
}

// scalar returns the string form of a JSON string, number or boolean.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// keys returns the sorted keys of m (names only, never values).
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Cleanup stops lease and token renewal and, with revoke_on_cleanup,
// revokes the leases still valid and the gateway's token.
func (p *Provider) Cleanup() error {
	return cleanup(p.client, p.leases, p.RevokeOnCleanup)
}

// cleanup is Cleanup shared by the providers of this package.
func cleanup(c *Client, ls *leases, revoke bool) error {
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if ls != nil {
		errs = append(errs, ls.close(ctx, revoke))
	}
	if revoke {
		errs = append(errs, c.revokeSelf(ctx))
	}
	errs = append(errs, c.Close())
	return errors.Join(errs...)
}

// CheckSources reports the login's files and variable that cannot be
// read now (providers.SourceChecker).
func (p *Provider) CheckSources() []providers.SourceProblem {
	return p.Server.CheckSources("server.")
}

// Interface guards.
var (
	_ providers.SourceChecker = (*Provider)(nil)
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Provisioner   = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.Scoped        = (*Provider)(nil)
	_ providers.CleanerUpper  = (*Provider)(nil)
)
