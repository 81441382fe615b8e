package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/internal/cfgfile"
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
	// skew is identity.jwt.clock_skew: a token whose exp is further in
	// the past is refused, as the jwt factor refuses it, whatever leeway
	// the API server allows itself.
	skew time.Duration
	// jwt, if set, claims tokens of its issuers; when cfg.Issuers is
	// empty, those are not reviewed.
	jwt *jwtVerifier
	// accepted and rejected remember answers by token hash, apart, so a
	// flood of bad tokens never evicts a good one; budget bounds the
	// reviews each source causes.
	accepted *ttlCache[tokenKey, *Factor]
	rejected *ttlCache[tokenKey, error]
	budget   *sourceBudget
	n        struct {
		authenticated, rejected, errors, positiveHits, negativeHits, throttled atomic.Uint64
	}
}

func newTokenReviewVerifier(cfg KubernetesConfig, jwt *jwtVerifier, skew time.Duration, o options) (*tokenReviewVerifier, error) {
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
		skew:   skew,
		jwt:    jwt,

		accepted: newTTLCache[tokenKey, *Factor](cfg.CacheSize),
		rejected: newTTLCache[tokenKey, error](cfg.NegativeCacheSize),
		budget:   newSourceBudget(cfg.ReviewRate, cfg.ReviewBurst, cfg.ReviewSources),
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
	if f, ok := v.accepted.get(key, now); ok {
		v.n.positiveHits.Add(1)
		return f, nil
	}
	if err, ok := v.rejected.get(key, now); ok {
		v.n.negativeHits.Add(1)
		return nil, err
	}
	// Only a review costs the source's budget: a client with a good
	// token, or one retrying a rejected token, spends nothing.
	if !v.budget.take(sourcePrefix(ev.Source), now) {
		v.n.throttled.Add(1)
		return nil, fmt.Errorf("token review: %s asked for more than %g reviews/s (burst %d) with tokens the gateway has not seen; retry later (kubernetes.review_rate, review_burst): %w",
			sourcePrefix(ev.Source), v.cfg.ReviewRate, v.cfg.ReviewBurst, ErrUnavailable)
	}
	f, err := v.review(ctx, tok)
	if err == nil && f != nil && !f.Expires.IsZero() && now.Add(-v.skew).After(f.Expires) {
		// The API server judges exp with its own leeway (a minute in
		// kube-apiserver); the gateway holds every token to one.
		f, err = nil, fmt.Errorf("token review: token has expired (its exp, %s, is more than identity.jwt.clock_skew, %s, ago; the API server's own leeway still accepted it): %w",
			f.Expires.UTC().Format(time.RFC3339), v.skew, ErrInvalid)
	}
	switch {
	case err == nil:
		v.n.authenticated.Add(1)
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
		v.accepted.put(key, f, until, now)
	case errors.Is(err, ErrInvalid):
		v.n.rejected.Add(1)
		v.rejected.put(key, err, now.Add(v.cfg.NegativeCacheTTL), now)
	default:
		v.n.errors.Add(1)
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
	own, err := cfgfile.ReadSecretContext(ctx, v.cfg.TokenFile)
	if err != nil {
		// cfgfile's words say what a named pipe, device or oversized
		// file in its place is; the review cannot be made: unavailable.
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
	} else if !v.cfg.AllowTokensWithoutExp {
		// A legacy service-account token (a Secret of type
		// kubernetes.io/service-account-token) never expires: stolen,
		// it identifies the workload until its Secret is deleted.
		return nil, fmt.Errorf("token review: the API server authenticated %s, but the token has no exp claim: a legacy service-account token, which never expires, is not accepted; "+
			"mount a projected service-account token instead (a serviceAccountToken volume with an audience of identity.kubernetes.audiences and expirationSeconds), "+
			"or set identity.kubernetes.allow_tokens_without_exp: true to accept tokens that never expire: %w", quoteShort(st.User.Username), ErrInvalid)
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

// sourceBudget is the token bucket (GCRA) of TokenReviews each source
// may cause: the theoretical arrival time of its next review is kept in a
// bounded TTL map until the bucket is full again (when it means the same
// as no entry).
type sourceBudget struct {
	mu        sync.Mutex
	tats      *ttlCache[netip.Prefix, time.Time]
	interval  time.Duration // between reviews at the sustained rate
	tolerance time.Duration // burst-1 intervals
}

func newSourceBudget(rate float64, burst, sources int) *sourceBudget {
	if rate <= 0 {
		rate = DefaultTokenReviewRate
	}
	interval := time.Duration(float64(time.Second) / rate)
	return &sourceBudget{tats: newTTLCache[netip.Prefix, time.Time](sources), interval: interval, tolerance: time.Duration(max(burst, 1)-1) * interval}
}

// take charges one review to src's bucket; false when it is empty.
func (b *sourceBudget) take(src netip.Prefix, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	tat, ok := b.tats.get(src, now)
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(b.interval)
	if next.Sub(now) > b.tolerance+b.interval {
		return false
	}
	b.tats.put(src, next, next, now)
	return true
}

// sourcePrefix is the budget's key for a client address: the address
// itself for IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func sourcePrefix(ap netip.AddrPort) netip.Prefix {
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// TokenReviewStats counts what the TokenReview verifier did, for metrics.
type TokenReviewStats struct {
	// Reviews are TokenReviews sent to the API server, by outcome.
	Authenticated, Rejected, Errors uint64
	// Hits are answers served from the cache of accepted tokens
	// (positive) and of rejected ones (negative), without a review.
	PositiveHits, NegativeHits uint64
	// Throttled are tokens not reviewed because their source had used
	// its budget (kubernetes.review_rate, review_burst).
	Throttled uint64
	// Cached and NegativeCached are the entries held.
	Cached, NegativeCached int
}

// TokenReviewStats returns the TokenReview verifier's counters; false
// when identity.kubernetes is not configured.
func (r *Resolver) TokenReviewStats() (TokenReviewStats, bool) {
	if r.kube == nil {
		return TokenReviewStats{}, false
	}
	return r.kube.stats(), true
}

func (v *tokenReviewVerifier) stats() TokenReviewStats {
	return TokenReviewStats{
		Authenticated: v.n.authenticated.Load(), Rejected: v.n.rejected.Load(), Errors: v.n.errors.Load(),
		PositiveHits: v.n.positiveHits.Load(), NegativeHits: v.n.negativeHits.Load(), Throttled: v.n.throttled.Load(),
		Cached: v.accepted.len(), NegativeCached: v.rejected.len(),
	}
}

var _ ProxyAuthorizationReader = (*tokenReviewVerifier)(nil)
