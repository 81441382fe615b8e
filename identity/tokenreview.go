package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// tokenReviewPath is the Kubernetes API's TokenReview endpoint.
const tokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// tokenReviewVerifier produces the kubernetes factor by asking the
// Kubernetes API server whether a token in Proxy-Authorization is valid
// (POST authentication.k8s.io/v1 TokenReview). Unlike a JWKS check, this
// notices when the token's pod or service account was deleted.
type tokenReviewVerifier struct {
	cfg    KubernetesConfig
	url    string
	client *http.Client
	now    func() time.Time
	// jwt, if set, claims tokens of its issuers; when cfg.Issuers is
	// empty, those are not reviewed.
	jwt   *jwtVerifier
	cache *reviewCache
}

func newTokenReviewVerifier(cfg KubernetesConfig, jwt *jwtVerifier, o options) (*tokenReviewVerifier, error) {
	client, err := httpClient(cfg.CAFile, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("identity: kubernetes: %w", err)
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &tokenReviewVerifier{
		cfg:    cfg,
		url:    strings.TrimSuffix(cfg.APIServer, "/") + tokenReviewPath,
		client: client,
		now:    o.now,
		jwt:    jwt,
		cache:  &reviewCache{m: map[tokenKey]review{}, max: DefaultTokenCacheSize},
	}, nil
}

// Kind implements Verifier.
func (v *tokenReviewVerifier) Kind() string { return KindKubernetes }

// ReadsProxyAuthorization implements ProxyAuthorizationReader.
func (v *tokenReviewVerifier) ReadsProxyAuthorization() {}

// Verify implements Verifier.
func (v *tokenReviewVerifier) Verify(ctx context.Context, ev Evidence) (*Factor, error) {
	tok, err := proxyToken(ev.ProxyAuthorization, DefaultMaxTokenBytes)
	if errors.Is(err, errNoToken) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	uc, isJWT := peekClaims(tok)
	switch {
	case len(v.cfg.Issuers) > 0:
		if !isJWT || !slices.Contains(v.cfg.Issuers, uc.Issuer) {
			return nil, nil
		}
	case isJWT && v.jwt != nil && v.jwt.claims(uc):
		return nil, nil
	}
	now := v.now()
	key := keyOf(tok)
	if r, ok := v.cache.get(key, now); ok {
		return r.f, r.err
	}
	f, err := v.review(ctx, tok)
	if err == nil || errors.Is(err, ErrInvalid) {
		until := now.Add(v.cfg.CacheTTL)
		if f != nil {
			// The answer holds for cache_ttl, not until the token's exp:
			// the API server stops authenticating a token whose pod is
			// deleted. The factor expires with the answer, so that what
			// keeps using it (a long-lived connection) asks again.
			if f.Expires.IsZero() || until.Before(f.Expires) {
				f.Expires = until
			}
			until = f.Expires
		}
		v.cache.put(key, review{f: f, err: err, until: until}, now)
	}
	return f, err
}

// tokenReview is the part of authentication.k8s.io/v1 TokenReview used.
type tokenReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences,omitempty"`
	} `json:"spec"`
	Status struct {
		Authenticated bool `json:"authenticated"`
		User          struct {
			Username string              `json:"username"`
			UID      string              `json:"uid"`
			Extra    map[string][]string `json:"extra"`
		} `json:"user"`
		Audiences []string `json:"audiences"`
	} `json:"status"`
}

func (v *tokenReviewVerifier) review(ctx context.Context, tok string) (*Factor, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	var in tokenReview
	in.APIVersion = "authentication.k8s.io/v1"
	in.Kind = "TokenReview"
	in.Spec.Token = tok
	in.Spec.Audiences = v.cfg.Audiences
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	own, err := os.ReadFile(v.cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token review: read the gateway's token_file: %v: %w", err, ErrUnavailable)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(own)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		// The *url.Error names the URL and the cause, never the body.
		return nil, fmt.Errorf("token review: %v: %w", err, ErrUnavailable)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes))
	if err != nil {
		return nil, fmt.Errorf("token review: read answer: %v: %w", err, ErrUnavailable)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("token review: the API server refused the gateway's own token (status %s); check token_file and that its service account may create tokenreviews: %w", resp.Status, ErrUnavailable)
	default:
		return nil, fmt.Errorf("token review: API server answered %s: %w", resp.Status, ErrUnavailable)
	}
	var out tokenReview
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("token review: answer is not a TokenReview: %v: %w", err, ErrUnavailable)
	}
	st := out.Status
	if !st.Authenticated {
		return nil, fmt.Errorf("token review: the API server did not authenticate the token: %w", ErrInvalid)
	}
	ok := false
	for _, a := range st.Audiences {
		if slices.Contains(v.cfg.Audiences, a) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, fmt.Errorf("token review: the token is valid for none of the audiences %s: %w", strings.Join(v.cfg.Audiences, ", "), ErrInvalid)
	}
	ns, sa, isSA := parseServiceAccountUser(st.User.Username)
	if !isSA {
		return nil, fmt.Errorf("token review: the token belongs to %s, not to a service account: %w", quoteShort(st.User.Username), ErrInvalid)
	}
	f := &Factor{Kind: KindKubernetes, Subject: st.User.Username, Token: NewToken(tok), Attributes: map[string]string{
		AttrNamespace:      ns,
		AttrServiceAccount: sa,
	}}
	if p := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(p) == 1 {
		f.Attributes[AttrPod] = p[0]
	}
	if uc, ok := peekClaims(tok); ok && uc.Expiry > 0 {
		// The API server verified the token, so its exp is genuine.
		f.Expires = time.Unix(int64(uc.Expiry), 0)
	}
	return f, nil
}

// parseServiceAccountUser splits "system:serviceaccount:NS:NAME".
func parseServiceAccountUser(u string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(u, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}

// Close implements io.Closer; the verifier runs nothing in the background.
func (v *tokenReviewVerifier) Close() error { return nil }

// review is a cached TokenReview answer: a factor, or an ErrInvalid.
type review struct {
	f     *Factor
	err   error
	until time.Time
}

// reviewCache remembers answers by token hash for a short while, so a
// client's burst of connections costs one review, and a flood of bad
// tokens does not become a flood of reviews.
type reviewCache struct {
	mu  sync.Mutex
	m   map[tokenKey]review
	max int
}

func (c *reviewCache) get(k tokenKey, now time.Time) (review, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	if !ok || !now.Before(r.until) {
		delete(c.m, k)
		return review{}, false
	}
	return r, true
}

func (c *reviewCache) put(k tokenKey, r review, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = r
}

var _ ProxyAuthorizationReader = (*tokenReviewVerifier)(nil)
