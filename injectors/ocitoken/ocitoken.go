// Package ocitoken is the "oci-token" injector: container registries
// that speak the OCI distribution API with token authentication (Docker
// Hub, GHCR, Google Artifact Registry, Azure Container Registry, Harbor,
// Quay, CNCF Distribution with auth.token). The gateway does the token
// exchange itself, so the client (buildah, skopeo, podman, crane, a CI
// job) holds neither the registry password nor a token, and never sees a
// 401 challenge.
//
//	inject:
//	  credential: registry-ci          # fields username and password
//	  as: oci-token
//	  realm: https://auth.example.com/token   # the WWW-Authenticate realm
//	  service: registry.example.com           # its service parameter
//
// For each request it derives the scope the registry will check from the
// method and path (the distribution spec's routes):
//
//	GET, HEAD                  repository:NAME:pull
//	POST, PUT, PATCH           repository:NAME:pull,push
//	DELETE                     repository:NAME:delete
//	/v2/ (the ping)            no scope
//	/v2/_catalog               registry:catalog:*
//	POST …/blobs/uploads/?mount=D&from=OTHER   also repository:OTHER:pull
//
// and asks the realm for a token for that scope alone
// (GET realm?service=S&scope=…, with the credential as HTTP Basic: the
// docker token protocol, which every registry above serves), then sets
// "Authorization: Bearer TOKEN". Tokens are cached per credential and
// scope until shortly before expires_in runs out, with one exchange for
// concurrent first requests of a scope. The password goes only to the
// realm configured here, never to the registry and never to a realm a
// registry names in its challenge; the registry sees only tokens scoped
// to the one repository and actions of the request the policy allowed.
package ocitoken

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

func init() {
	injectors.Register(injectors.Module{Name: "oci-token",
		Doc: "container registries with token auth (OCI distribution): the gateway exchanges the credential at the realm for a token scoped to each request's repository and actions, and sends it as Bearer",
		SettingDocs: map[string]string{
			"realm":          "the token endpoint: the realm of the registry's WWW-Authenticate: Bearer challenge (https; http only for loopback)",
			"service":        "the service parameter of that challenge (e.g. registry.docker.io, ghcr.io)",
			"username":       "a fixed user name instead of username_field (oauth2accesstoken for Google Artifact Registry with an access token)",
			"username_field": `credential field with the user name (default "username")`,
			"password_field": `credential field with the password or access token (default "password")`,
			"ca_cert":        "PEM file of CAs trusted for the realm instead of the system roots",
			"timeout":        "bound of one token exchange (default 10s)",
		},
		New: func() injectors.Injector { return new(Injector) }})
}

// Injector is the oci-token injector. Its settings are read-only after
// Provision; the token cache is safe for concurrent use.
type Injector struct {
	// Realm is the token endpoint URL.
	Realm string `yaml:"realm"`
	// Service is the service parameter sent to the realm.
	Service string `yaml:"service"`
	// Username, when set, is the user name, and UsernameField is unused.
	Username string `yaml:"username"`
	// UsernameField is the credential field with the user name. Default
	// "username".
	UsernameField string `yaml:"username_field"`
	// PasswordField is the credential field with the password. Default
	// "password".
	PasswordField string `yaml:"password_field"`
	// CACert is a PEM file of CAs trusted for the realm.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds one token exchange. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	client *http.Client
	realm  *url.URL
	tokens *tokenCache
}

// DefaultTimeout bounds one token exchange when timeout is not set.
const DefaultTimeout = 10 * time.Second

// Provision applies defaults and builds the realm's client.
func (in *Injector) Provision() error {
	if in.UsernameField == "" {
		in.UsernameField = providers.FieldUsername
	}
	if in.PasswordField == "" {
		in.PasswordField = providers.FieldPassword
	}
	if in.Timeout == 0 {
		in.Timeout = DefaultTimeout
	}
	if in.Realm == "" {
		return errors.New("oci-token: set realm to the registry's token endpoint (the realm of its WWW-Authenticate: Bearer challenge, e.g. https://auth.docker.io/token)")
	}
	if err := httpclient.CheckURL(in.Realm); err != nil {
		return fmt.Errorf("oci-token: realm %w", err)
	}
	u, err := url.Parse(in.Realm)
	if err != nil {
		return fmt.Errorf("oci-token: realm %q is not a URL", httpclient.Display(in.Realm))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oci-token: realm %q must have no query or fragment; service and scope are added per request", httpclient.Display(in.Realm))
	}
	in.realm = u
	c, err := httpclient.NewClient(httpclient.Options{Timeout: in.Timeout, CACertFile: in.CACert})
	if err != nil {
		return fmt.Errorf("oci-token: %w", err)
	}
	in.client = c
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("oci-token: cache key: %w", err)
	}
	in.tokens = newTokenCache(key, time.Now)
	return nil
}

// Validate checks the settings.
func (in *Injector) Validate() error {
	if in.Service == "" {
		return errors.New("oci-token: set service to the service parameter of the registry's WWW-Authenticate: Bearer challenge (e.g. registry.docker.io)")
	}
	if !httpguts.ValidHeaderFieldValue(in.Username) || strings.Contains(in.Username, ":") {
		return errors.New("oci-token: username must not contain ':' or control characters")
	}
	if in.Timeout < 0 {
		return errors.New("oci-token: timeout must be positive")
	}
	return nil
}

// Cleanup closes the realm client's idle connections.
func (in *Injector) Cleanup() error {
	if in.client != nil {
		in.client.CloseIdleConnections()
	}
	return nil
}

// authorization is the answer of Headers: never written.
var authorization = []string{"Authorization"}

// Headers implements injectors.HeaderNames.
func (*Injector) Headers() []string { return authorization[:1:1] }

// Inject derives the request's scope, gets a token for it (cached or
// from the realm, bounded by the request's context) and sets it as
// Bearer. r changes only when every step succeeded.
func (in *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	scope, err := Scope(r.Method, r.URL)
	if err != nil {
		return err
	}
	user := in.Username
	if user == "" {
		if user, err = field(cred, in.UsernameField); err != nil {
			return err
		}
	}
	pass, err := field(cred, in.PasswordField)
	if err != nil {
		return err
	}
	if strings.Contains(user, ":") || !httpguts.ValidHeaderFieldValue(user) || !httpguts.ValidHeaderFieldValue(pass) {
		return fmt.Errorf("oci-token: the credential's user name holds ':' or a control character, or its password a control character: %w", injectors.ErrInvalidValue)
	}
	tok, err := in.tokens.get(r.Context(), user, pass, scope, func(ctx context.Context) (token, error) {
		return in.exchange(ctx, user, pass, scope)
	})
	if err != nil {
		return err
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// field reads a credential field for Inject.
func field(cred *providers.Credential, name string) (string, error) {
	s, ok := cred.Field(name)
	if !ok {
		return "", fmt.Errorf("oci-token: credential has no %q field (or it is empty): %w", name, injectors.ErrMissingField)
	}
	return s.Reveal(), nil
}

// maxTokenResponse bounds the realm's answer read into memory.
const maxTokenResponse = 1 << 20

// maxTokenBytes bounds a token put into a header (ACR's JWTs run to a few
// KiB).
const maxTokenBytes = 32 << 10

// The token lifetime the distribution token spec assumes when expires_in
// is missing, and the least a realm may grant ("a token should never be
// returned with less than 60 seconds to live").
const defaultTokenLife = 60 * time.Second

// maxTokenLife caps how long a token is kept, whatever the realm states:
// registries grant minutes, and a day bounds what a mistaken realm costs.
const maxTokenLife = 24 * time.Hour

// token is one exchanged token and when to stop sending it: before it
// expires, by a margin of a quarter of its life (at most 30 s) for the
// request's journey and clock skew.
type token struct {
	value   string
	refresh time.Time
}

// exchange asks the realm for a token for scope, with user and pass as
// HTTP Basic. Its errors name the realm and scope, never a value or the
// realm's body.
func (in *Injector) exchange(ctx context.Context, user, pass string, scope []string) (token, error) {
	u := *in.realm
	q := url.Values{"service": {in.Service}}
	for _, s := range scope {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	what := fmt.Sprintf("GET %s (scope %q)", httpclient.Display(in.Realm), strings.Join(scope, " "))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return token{}, fmt.Errorf("oci-token: %s: %w", what, err)
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := in.client.Do(req)
	if err != nil {
		cause, timeout := httpclient.DoError(err)
		if timeout {
			return token{}, fmt.Errorf("oci-token: %s: no answer within %s: %w", what, in.Timeout, cause)
		}
		return token{}, fmt.Errorf("oci-token: %s: %w", what, cause)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return token{}, fmt.Errorf("oci-token: %s: 401: the token service refused the credential's user name and password: %w", what, injectors.ErrInvalidValue)
	case resp.StatusCode != http.StatusOK:
		return token{}, fmt.Errorf("oci-token: %s: status %d from the token service", what, resp.StatusCode)
	}
	var body struct {
		Token       string          `json:"token"`
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&body); err != nil {
		return token{}, fmt.Errorf("oci-token: %s: the answer is not a token response (JSON with token or access_token)", what)
	}
	v := body.Token
	if v == "" {
		v = body.AccessToken
	}
	if v == "" || len(v) > maxTokenBytes || !b64token(v) {
		return token{}, fmt.Errorf("oci-token: %s: the answer holds no token usable as a Bearer value (empty, over %d bytes, or not RFC 6750 b64token characters)", what, maxTokenBytes)
	}
	// The providers' one reading of a stated lifetime: absent is the
	// spec's 60 s; 0, negative or not a whole number is refused naming
	// the field, never kept a default period.
	life, present, err := providers.LifetimeSeconds("expires_in", body.ExpiresIn)
	switch {
	case err != nil:
		return token{}, fmt.Errorf("oci-token: %s: %w", what, err)
	case !present:
		life = defaultTokenLife
	}
	life = min(life, maxTokenLife)
	// Counted from before the request: the realm issued it no earlier.
	return token{value: v, refresh: start.Add(life - min(30*time.Second, life/4))}, nil
}

// b64token reports whether v is an RFC 6750 b64token: what a Bearer
// value may hold, and nothing that could split a header.
func b64token(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return true
}

// nameRE is a repository name of the distribution spec: path components
// of lower-case alphanumerics joined by '.', '_', '__' or dashes.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// Scope returns the token scopes the registry checks for a request (nil
// for the /v2/ ping, which needs a token for no resource), or an error
// wrapping injectors.ErrUnsupportedRequest for a path that is not one of
// the distribution API's or a method it does not use.
func Scope(method string, u *url.URL) ([]string, error) {
	p := u.EscapedPath()
	if p == "/v2/" || p == "/v2" {
		return nil, nil
	}
	if p == "/v2/_catalog" {
		return []string{"registry:catalog:*"}, nil
	}
	bad := func(why string) ([]string, error) {
		return nil, fmt.Errorf("oci-token: %s %s: %s: %w", method, p, why, injectors.ErrUnsupportedRequest)
	}
	var actions string
	switch method {
	case http.MethodGet, http.MethodHead:
		actions = "pull"
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		actions = "pull,push"
	case http.MethodDelete:
		actions = "delete"
	default:
		return bad("not a method of the distribution API")
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return bad("not a path of the distribution API (/v2/...)")
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	// From the end, as the registry routes: the reference, digest and
	// upload id hold no '/', the name may.
	var name []string
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list",
		n >= 3 && segs[n-2] == "manifests" && segs[n-1] != "",
		n >= 3 && segs[n-2] == "referrers" && segs[n-1] != "":
		name = segs[:n-2]
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		name = segs[:n-3] // uploads/ (start) or uploads/ID
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		name = segs[:n-2]
	case n >= 3 && segs[n-2] == "blobs" && strings.Contains(segs[n-1], ":"):
		name = segs[:n-2]
	default:
		return bad("not a route of the distribution API (manifests, blobs, blobs/uploads, tags/list, referrers)")
	}
	repo := strings.Join(name, "/")
	if !nameRE.MatchString(repo) {
		return bad("the repository name is not one the distribution spec allows")
	}
	scope := []string{"repository:" + repo + ":" + actions}
	if method == http.MethodPost && segs[n-2] == "uploads" || method == http.MethodPost && segs[n-1] == "uploads" {
		q := u.Query()
		if from := q.Get("from"); q.Has("mount") && from != "" {
			if !nameRE.MatchString(from) {
				return bad("the from repository of a cross-repository mount is not a name the distribution spec allows")
			}
			if from != repo {
				scope = append(scope, "repository:"+from+":pull")
			}
		}
	}
	return scope, nil
}

// tokenCache holds tokens per credential and scope. The credential part
// of a key is an HMAC of the user name and password under a key of this
// injector, so no password is kept beyond the credential cache's copy.
type tokenCache struct {
	key []byte
	now func() time.Time

	mu sync.Mutex
	m  map[string]*tokenEntry
}

// tokenEntry is one scope's token, or the exchange that is getting it.
type tokenEntry struct {
	done chan struct{} // closed when the exchange ended
	tok  token
	err  error
}

// maxTokens bounds the cache: beyond it, expired tokens are dropped, and
// then it starts again empty.
const maxTokens = 4096

func newTokenCache(key []byte, now func() time.Time) *tokenCache {
	return &tokenCache{key: key, now: now, m: map[string]*tokenEntry{}}
}

// fresh reports whether t is far enough from expiry to send.
func (c *tokenCache) fresh(t token, now time.Time) bool {
	return now.Before(t.refresh)
}

// get returns the token of (user, pass, scope): a fresh cached one, the
// one an exchange in flight gets, or a new one from exchange. A failed
// exchange is not cached: the next request tries again.
func (c *tokenCache) get(ctx context.Context, user, pass string, scope []string, exchange func(context.Context) (token, error)) (string, error) {
	mac := hmac.New(sha256.New, c.key)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(pass))
	k := string(mac.Sum(nil)) + strings.Join(scope, " ")
	for range 3 {
		c.mu.Lock()
		e, ok := c.m[k]
		if ok {
			select {
			case <-e.done:
				if e.err == nil && c.fresh(e.tok, c.now()) {
					c.mu.Unlock()
					return e.tok.value, nil
				}
				ok = false // stale or failed: exchange again
			default:
			}
		}
		if !ok {
			e = &tokenEntry{done: make(chan struct{})}
			c.put(k, e)
			c.mu.Unlock()
			e.tok, e.err = exchange(ctx)
			c.mu.Lock()
			if e.err != nil && c.m[k] == e {
				delete(c.m, k)
			}
			close(e.done)
			c.mu.Unlock()
			if e.err != nil {
				return "", e.err
			}
			return e.tok.value, nil
		}
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return "", fmt.Errorf("oci-token: waiting for a token exchange: %w", context.Cause(ctx))
		}
		if e.err == nil {
			return e.tok.value, nil
		}
		if !errors.Is(e.err, context.Canceled) && !errors.Is(e.err, context.DeadlineExceeded) {
			return "", e.err
		}
		// The request that started the exchange left: try again with
		// this request's context.
	}
	return "", errors.New("oci-token: the token exchanges this request waited for failed")
}

// put stores e under k, making room first; c.mu is held.
func (c *tokenCache) put(k string, e *tokenEntry) {
	if len(c.m) >= maxTokens {
		now := c.now()
		for key, old := range c.m {
			select {
			case <-old.done:
				if old.err != nil || !c.fresh(old.tok, now) {
					delete(c.m, key)
				}
			default:
			}
		}
		if len(c.m) >= maxTokens {
			c.m = map[string]*tokenEntry{}
		}
	}
	c.m[k] = e
}

// Interface guards.
var (
	_ injectors.Injector    = (*Injector)(nil)
	_ injectors.HeaderNames = (*Injector)(nil)
	_ injectors.Provisioner = (*Injector)(nil)
	_ injectors.Validator   = (*Injector)(nil)
)
