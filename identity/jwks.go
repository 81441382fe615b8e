package identity

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/httpclient"
)

// maxFetchBytes bounds a fetched discovery document, JWKS or posture feed.
const maxFetchBytes = 1 << 20

// errRateLimited is returned by keySet.refetch when the last fetch was
// too recent.
var errRateLimited = errors.New("refetch rate-limited")

// keySet holds one issuer's verification keys: from a file (reloaded
// when it changes) or from a URL (refetched in the background, and on
// demand when a token names an unknown key id, at most once per
// MinRefetchInterval, with concurrent demands sharing one fetch).
type keySet struct {
	issuer string
	cfg    IssuerConfig
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	file   *fileReloader // set for jwks_file
	// local, set for the gateway's own issuer, returns its keys; nothing
	// is fetched.
	local func() []jose.JSONWebKey

	cur atomic.Pointer[[]jose.JSONWebKey]
	// changed is called when a key set replaces one that held a key it
	// lacks (WithOnChange); nil: not called.
	changed func()

	mu          sync.Mutex // guards the fields below
	lastAttempt time.Time
	lastErr     error
	inflight    *fetchCall
	jwksURI     string // from discovery
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newKeySet(ctx context.Context, cfg IssuerConfig, o options) (*keySet, error) {
	k := &keySet{issuer: cfg.Issuer, cfg: cfg, now: o.now, log: o.log, changed: o.changed}
	if cfg.JWKSFile != "" {
		k.file = newFileReloader(cfg.JWKSFile, "JWKS", cfg.RefreshInterval, o.log,
			func(data []byte) error {
				keys, err := parseJWKS(data)
				if err != nil {
					return err
				}
				k.set(keys)
				return nil
			})
		if _, err := k.file.Load(); err != nil {
			return nil, err
		}
		return k, nil
	}
	client, err := httpClient(cfg.CAFile, cfg.FetchTimeout)
	if err != nil {
		return nil, err
	}
	k.client = client
	k.jwksURI = cfg.JWKSURL
	// The first fetch may fail (the issuer is down, the network not up
	// yet): tokens retry it, and the background refresh too.
	if err := k.refetch(ctx); err != nil {
		k.log.Warn("identity: cannot fetch the JWKS yet; will retry", "issuer", k.name(), "error", err)
	}
	return k, nil
}

// name names the issuer in logs and errors.
func (k *keySet) name() string {
	if k.issuer != "" {
		return k.issuer
	}
	return "spiffe://" + k.cfg.TrustDomain
}

// run refreshes the keys every RefreshInterval until ctx is done.
func (k *keySet) run(ctx context.Context) {
	if k.file != nil {
		k.file.Run(ctx)
		return
	}
	t := time.NewTicker(k.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		k.lastAttempt = time.Time{} // a scheduled refresh is never rate-limited
		k.mu.Unlock()
		if err := k.refetch(ctx); err != nil && !errors.Is(err, context.Canceled) {
			k.log.Warn("identity: JWKS refresh failed; keeping the last keys", "issuer", k.name(), "error", err)
		}
	}
}

// candidates returns the keys that may have signed a token with this kid
// and alg. An unknown kid triggers one refetch (rate-limited).
func (k *keySet) candidates(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	if k.local != nil {
		keys := k.local()
		k.cur.Store(&keys)
		if ks := k.match(kid, alg); len(ks) > 0 {
			return ks, nil
		}
		return nil, fmt.Errorf("issuer %s has no %s key with key id %s (a token of another gateway, or of a key rotated out): %w", k.name(), alg, quoteShort(kid), ErrInvalid)
	}
	if ks := k.match(kid, alg); len(ks) > 0 {
		return ks, nil
	}
	err := k.refetch(ctx)
	if ks := k.match(kid, alg); len(ks) > 0 {
		return ks, nil
	}
	if cur := k.cur.Load(); cur == nil || len(*cur) == 0 {
		// Nothing was ever fetched: the issuer is unreachable, which
		// says nothing about the token.
		if errors.Is(err, errRateLimited) {
			k.mu.Lock()
			err = k.lastErr
			k.mu.Unlock()
		}
		if err != nil {
			return nil, fmt.Errorf("issuer %s: no keys yet: %v: %w", k.name(), err, ErrUnavailable)
		}
	}
	return nil, fmt.Errorf("issuer %s has no %s key with key id %s: %w", k.name(), alg, quoteShort(kid), ErrInvalid)
}

// holds reports whether pub is one of the issuer's keys in force (for
// the local issuer, the keys it verifies with now). A token verified
// with a key the issuer has since removed no longer verifies.
func (k *keySet) holds(pub crypto.PublicKey) bool {
	var keys []jose.JSONWebKey
	if k.local != nil {
		keys = k.local()
	} else if cur := k.cur.Load(); cur != nil {
		keys = *cur
	}
	return holdsKey(keys, pub)
}

// match returns the keys for kid ("" matches every key) usable with alg.
func (k *keySet) match(kid, alg string) []jose.JSONWebKey {
	cur := k.cur.Load()
	if cur == nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, key := range *cur {
		if kid != "" && key.KeyID != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		out = append(out, key)
	}
	return out
}

// refetch loads the keys again, unless the last attempt was less than
// MinRefetchInterval ago (errRateLimited). Concurrent calls share one
// fetch; a caller whose ctx ends stops waiting, not the fetch.
func (k *keySet) refetch(ctx context.Context) error {
	k.mu.Lock()
	if c := k.inflight; c != nil {
		k.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := k.now()
	if !k.lastAttempt.IsZero() && now.Sub(k.lastAttempt) < k.cfg.MinRefetchInterval {
		k.mu.Unlock()
		return errRateLimited
	}
	k.lastAttempt = now
	c := &fetchCall{done: make(chan struct{})}
	k.inflight = c
	k.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.FetchTimeout)
	c.err = k.fetch(fctx)
	cancel()

	k.mu.Lock()
	k.inflight = nil
	k.lastErr = c.err
	k.mu.Unlock()
	close(c.done)
	return c.err
}

func (k *keySet) fetch(ctx context.Context) error {
	if k.file != nil {
		_, err := k.file.Load()
		return err
	}
	k.mu.Lock()
	uri := k.jwksURI
	k.mu.Unlock()
	if k.cfg.DiscoveryURL != "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, k.client, k.cfg.DiscoveryURL, k.cfg.BearerTokenFile, &doc); err != nil {
			return fmt.Errorf("issuer %s: discovery: %w", k.name(), err)
		}
		if doc.Issuer != k.issuer {
			return fmt.Errorf("issuer %s: discovery document %s names issuer %s; they must be equal", k.name(), k.cfg.DiscoveryURL, quoteShort(doc.Issuer))
		}
		if err := checkURL(doc.JWKSURI, true); err != nil {
			return fmt.Errorf("issuer %s: discovery document's jwks_uri: %w", k.name(), err)
		}
		uri = doc.JWKSURI
		k.mu.Lock()
		k.jwksURI = uri
		k.mu.Unlock()
	}
	// The bearer token goes only where it was configured to go: to the
	// discovery document's own origin, or to a configured jwks_url. A
	// jwks_uri on another origin (a discovery document can name any host)
	// is fetched without it.
	bearer := k.cfg.BearerTokenFile
	if k.cfg.DiscoveryURL != "" && !sameOrigin(k.cfg.DiscoveryURL, uri) {
		bearer = ""
	}
	body, err := get(ctx, k.client, uri, bearer)
	if err != nil {
		return fmt.Errorf("issuer %s: JWKS: %w", k.name(), err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("issuer %s: JWKS %s: %w", k.name(), uri, err)
	}
	k.set(keys)
	return nil
}

// set puts keys in force and, when a key of the set they replace is not
// among them (a key rotated out, or withdrawn after a leak), reports the
// change (k.changed): tokens it signed no longer verify, on connections
// and requests already open too.
func (k *keySet) set(keys []jose.JSONWebKey) {
	old := k.cur.Swap(&keys)
	if old == nil || k.changed == nil {
		return
	}
	for i := range *old {
		if !holdsKey(keys, (*old)[i].Key) {
			k.changed()
			return
		}
	}
}

// holdsKey reports whether pub is one of keys.
func holdsKey(keys []jose.JSONWebKey, pub crypto.PublicKey) bool {
	e, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return false
	}
	for i := range keys {
		if e.Equal(keys[i].Key) {
			return true
		}
	}
	return false
}

// parseJWKS returns the public signing keys of a JSON Web Key Set. Keys
// that do not parse, keys not declared for verifying signatures
// (signingKeyPurpose) and symmetric keys are skipped: a symmetric key
// would let whoever knows it mint tokens, and a public key must never be
// usable as an HMAC secret.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	var out []jose.JSONWebKey
	for _, raw := range set.Keys {
		if !signingKeyPurpose(raw) {
			continue
		}
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue
		}
		if !signingUse(key.Use) || !key.Valid() {
			continue
		}
		if _, symmetric := key.Key.([]byte); symmetric {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
			if !key.Valid() {
				continue
			}
		}
		out = append(out, key)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no usable public signing key (symmetric keys, and keys whose use is not \"sig\" or \"jwt-svid\", whose key_ops lack \"verify\" or whose alg is not a signature algorithm, are skipped)")
	}
	return out, nil
}

// signingKeyPurpose reports whether a JSON Web Key declares nothing that
// excludes verifying token signatures with it (RFC 7517 4.2-4.4): its
// "use", when present, is "sig" (or "jwt-svid", a SPIFFE bundle's JWT
// authority); its "key_ops", when present, hold "verify"; its "alg", when
// present, is an asymmetric signature algorithm. A key published for
// something else is not one of the issuer's token signing keys and is
// skipped: a key to encrypt to the issuer (use "enc", key_ops like
// ["encrypt", "wrapKey"], alg RSA-OAEP or ECDH-ES), a SPIFFE bundle's
// X.509 CA (use "x509-svid": whoever holds an upstream CA's key must not
// mint JWT-SVIDs), any other or mis-cased use, and members not of these
// JSON types. Member names are matched exactly, as go-jose matches them
// (go-jose reads "use" but not "key_ops"); an empty "use" or "alg" says
// nothing and counts as absent.
func signingKeyPurpose(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return false
	}
	str := func(name string) (string, bool) {
		v, ok := m[name]
		if !ok {
			return "", true
		}
		var s string
		return s, json.Unmarshal(v, &s) == nil
	}
	if use, ok := str("use"); !ok || !signingUse(use) {
		return false
	}
	if alg, ok := str("alg"); !ok || alg != "" && !slices.Contains(asymmetricAlgorithms, alg) {
		return false
	}
	if v, ok := m["key_ops"]; ok {
		var ops []string
		if json.Unmarshal(v, &ops) != nil || !slices.Contains(ops, "verify") {
			return false
		}
	}
	return true
}

// signingUse reports whether a JSON Web Key's "use" allows verifying
// token signatures: none, "sig", or a SPIFFE bundle's "jwt-svid".
func signingUse(use string) bool { return use == "" || use == "sig" || use == "jwt-svid" }

// httpClient returns a client that trusts caFile (PEM) instead of the
// system roots when caFile is set, never follows redirects to another
// scheme, and times out after timeout.
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	// The gateway must not route its own verification through a proxy
	// (httpclient ignores HTTPS_PROXY and the rest).
	tr := httpclient.NewTransport()
	if caFile != "" {
		pool, err := httpclient.ReadRoots(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != via[0].URL.Scheme {
				return errors.New("redirect changes the scheme")
			}
			return nil
		},
	}, nil
}

// get fetches url and returns its body (at most maxFetchBytes). The
// bearer token file, if any, is read now and sent; it never appears in
// errors.
func get(ctx context.Context, c *http.Client, url, bearerFile string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	if bearerFile != "" {
		tok, err := cfgfile.ReadSecretContext(ctx, bearerFile)
		if err != nil {
			return nil, fmt.Errorf("read bearer_token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxFetchBytes {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", url, maxFetchBytes)
	}
	return body, nil
}

func getJSON(ctx context.Context, c *http.Client, url, bearerFile string, v any) error {
	body, err := get(ctx, c, url, bearerFile)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// quoteShort quotes an untrusted value for an error message, cut to 64
// bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// sameOrigin reports whether two URLs have the same scheme, host and port.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "http") {
			return "80"
		}
		return "443"
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}
