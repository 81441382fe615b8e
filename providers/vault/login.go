package vault

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/providers"
)

// loginResult is what a login produced.
type loginResult struct {
	token     providers.Secret
	ttl       time.Duration // the TTL left
	renewable bool
	// creationTTL is the TTL the token was created with, when it differs
	// from ttl (a token read by the token method after some time): the
	// increment its renewals ask for. 0: ttl.
	creationTTL time.Duration
}

// login obtains a token with the configured method. Errors wrap
// providers.ErrUnavailable when Vault could not be reached (so Client.do
// retries) and never contain the token, secret_id or JWT.
func (c *Client) login(ctx context.Context) (loginResult, error) {
	a := c.srv.Auth
	switch a.Method {
	case MethodToken:
		return c.loginToken(ctx)
	case MethodAppRole:
		roleID := a.RoleID
		if a.RoleIDFile != "" {
			v, err := readFile(ctx, "role_id_file", a.RoleIDFile)
			if err != nil {
				return loginResult{}, fmt.Errorf("approle login: %w", err)
			}
			roleID = v
		}
		secretID, err := c.appRoleSecretID(ctx)
		if err != nil {
			return loginResult{}, fmt.Errorf("approle login: %w", err)
		}
		return c.loginWith(ctx, a.Method, map[string]any{"role_id": roleID, "secret_id": secretID.Reveal()})
	case MethodKubernetes, MethodJWT:
		jwt, err := readFile(ctx, "token_file", a.TokenFile)
		if err != nil {
			return loginResult{}, fmt.Errorf("%s login: %w", a.Method, err)
		}
		return c.loginWith(ctx, a.Method, map[string]any{"role": a.Role, "jwt": jwt})
	}
	return loginResult{}, fmt.Errorf("login method %q is not known", a.Method)
}

// loginWith writes body to auth/MOUNT/login and returns the token.
func (c *Client) loginWith(ctx context.Context, method string, body map[string]any) (loginResult, error) {
	path := "auth/" + c.srv.Auth.Mount + "/login"
	for _, k := range []string{"secret_id", "jwt"} {
		if v, ok := body[k].(string); ok {
			c.remember(v)
		}
	}
	anon, err := c.newAPI("")
	if err != nil {
		return loginResult{}, err
	}
	sec, err := anon.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return loginResult{}, c.loginError(ctx, method, path, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return loginResult{}, fmt.Errorf("%s login at %s: Vault answered without auth.client_token", method, path)
	}
	return loginResult{
		token:     providers.NewSecret(sec.Auth.ClientToken),
		ttl:       providers.Seconds(sec.Auth.LeaseDuration),
		renewable: sec.Auth.Renewable,
	}, nil
}

// loginError describes a failed login request, wrapping ErrUnavailable
// when Vault was unavailable.
func (c *Client) loginError(ctx context.Context, method, path string, err error) error {
	switch classify(ctx, err) {
	case kindTransient, kindCanceled:
		return fmt.Errorf("%s login at %s: %w: %w", method, path, c.describe(err), providers.ErrUnavailable)
	}
	return fmt.Errorf("%s login at %s: %w", method, path, c.describe(err))
}

// loginToken reads the configured token and asks Vault for its TTL.
func (c *Client) loginToken(ctx context.Context) (loginResult, error) {
	a := c.srv.Auth
	var v string
	if a.TokenFile != "" {
		s, err := readFile(ctx, "token_file", a.TokenFile)
		if err != nil {
			return loginResult{}, fmt.Errorf("token login: %w", err)
		}
		v = s
	} else {
		v = strings.TrimSpace(os.Getenv(a.TokenEnv))
		if v == "" {
			return loginResult{}, fmt.Errorf("token login: environment variable %s is not set or empty: %w", a.TokenEnv, providers.ErrUnavailable)
		}
	}
	tc, err := c.newAPI(v)
	if err != nil {
		return loginResult{}, err
	}
	sec, err := tc.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		if isStatus(err, http.StatusForbidden) {
			return loginResult{}, fmt.Errorf("token login: Vault rejected the configured token (revoked or expired): %w", c.describe(err))
		}
		return loginResult{}, c.loginError(ctx, "token", "auth/token/lookup-self", err)
	}
	if sec == nil || sec.Data == nil {
		// An empty or non-JSON 2xx/3xx answer: vault/api returns no
		// secret and no error.
		return loginResult{}, fmt.Errorf("token login: Vault answered auth/token/lookup-self without data; check that server.address is Vault's API address")
	}
	ttl, err := sec.TokenTTL()
	if err != nil {
		return loginResult{}, fmt.Errorf("token login: lookup-self: %w", err)
	}
	renewable, _ := sec.TokenIsRenewable()
	// lookup-self's ttl is what is left; renewals ask for the TTL the
	// token was created with (creation_ttl), as Vault Agent does.
	var creation time.Duration
	if n, ok := sec.Data["creation_ttl"].(json.Number); ok {
		if secs, err := n.Int64(); err == nil && secs > 0 {
			creation = providers.Seconds(secs)
		}
	}
	return loginResult{token: providers.NewSecret(v), ttl: ttl, renewable: renewable, creationTTL: creation}, nil
}

// appRoleSecretID returns the secret_id, unwrapping the wrapping token in
// secret_id_file the first time it is seen. A wrapping token can be
// unwrapped once; the secret_id it held is kept in memory for later
// logins. Before unwrapping, the token's creation path is checked, so a
// wrapping token for something else (a substituted token) is refused.
// Called with c.sem held.
func (c *Client) appRoleSecretID(ctx context.Context) (providers.Secret, error) {
	a := c.srv.Auth
	v, err := readFile(ctx, "secret_id_file", a.SecretIDFile)
	if err != nil {
		return providers.Secret{}, err
	}
	if !*a.SecretIDWrapped {
		return providers.NewSecret(v), nil
	}
	sum := sha256.Sum256([]byte(v))
	if sum == c.wrapSum && !c.secretID.IsZero() {
		return c.secretID, nil
	}
	anon, err := c.newAPI("")
	if err != nil {
		return providers.Secret{}, err
	}
	c.remember(v)
	look, err := anon.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": v})
	if err != nil {
		if classify(ctx, err) == kindPermanent || classify(ctx, err) == kindForbidden {
			return providers.Secret{}, fmt.Errorf("look up the wrapping token in %s: %w; it was already unwrapped or has expired: deliver a new response-wrapped secret_id (if credgate did not unwrap it, someone else may have)", a.SecretIDFile, c.describe(err))
		}
		return providers.Secret{}, fmt.Errorf("look up the wrapping token in %s: %w: %w", a.SecretIDFile, c.describe(err), providers.ErrUnavailable)
	}
	var created string
	if look != nil {
		created, _ = look.Data["creation_path"].(string)
	}
	prefix := "auth/" + a.Mount + "/role/"
	if !strings.HasPrefix(created, prefix) || !strings.HasSuffix(created, "/secret-id") {
		return providers.Secret{}, fmt.Errorf("the wrapping token in %s was created at %q, not at %sNAME/secret-id; refusing to unwrap it", a.SecretIDFile, created, prefix)
	}
	wrapped, err := c.newAPI(v)
	if err != nil {
		return providers.Secret{}, err
	}
	sec, err := wrapped.Logical().UnwrapWithContext(ctx, "")
	if err != nil {
		if classify(ctx, err) == kindTransient || classify(ctx, err) == kindCanceled {
			return providers.Secret{}, fmt.Errorf("unwrap the secret_id in %s: %w: %w", a.SecretIDFile, c.describe(err), providers.ErrUnavailable)
		}
		return providers.Secret{}, fmt.Errorf("unwrap the secret_id in %s: %w", a.SecretIDFile, c.describe(err))
	}
	var sid string
	if sec != nil {
		sid, _ = sec.Data["secret_id"].(string)
	}
	if sid == "" {
		return providers.Secret{}, fmt.Errorf("unwrap the secret_id in %s: the wrapped response has no secret_id", a.SecretIDFile)
	}
	c.secretID, c.wrapSum = providers.NewSecret(sid), sum
	return c.secretID, nil
}

// readFile returns a file's contents without surrounding white space,
// read through cfgfile: a named pipe, a device, a directory or a file over
// cfgfile.MaxSecretBytes is refused at once, never read (wrapping
// providers.ErrNotConfigured: a setting to fix). A missing or
// empty file wraps providers.ErrUnavailable (it may be written later, by
// Vault Agent, the kubelet or an operator).
func readFile(ctx context.Context, key, path string) (string, error) {
	b, err := cfgfile.ReadSecretContext(ctx, path)
	switch {
	case errors.Is(err, cfgfile.ErrNotRegular), errors.Is(err, cfgfile.ErrTooLarge):
		// cfgfile's words say what the path is and what to name.
		return "", fmt.Errorf("%s: %w: %w", key, err, providers.ErrNotConfigured)
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s %s does not exist: %w", key, path, providers.ErrUnavailable)
	case err != nil:
		return "", fmt.Errorf("%s: %w", key, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s %s is empty: %w", key, path, providers.ErrUnavailable)
	}
	return v, nil
}
