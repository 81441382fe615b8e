package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/oauth2test"
)

// authSeen is one request the OAuth2-protected origin received.
type authSeen struct {
	Method, Path, Token string
	// Active is what the authorization server said about the token when
	// the request arrived; Subject is whom it was issued for.
	Active  bool
	Subject string
}

// introspector asks an authorization server whether a token is active.
type introspector func(ctx context.Context, token string) (subject string, active bool)

// authOrigin is an HTTPS "SaaS" that serves a request only if the
// authorization server says its bearer token is active (401 otherwise).
// The authorization server is chosen by the first path segment.
type authOrigin struct {
	addr string
	by   map[string]introspector

	mu   sync.Mutex
	seen []authSeen
}

func startAuthOrigin(t *testing.T, by map[string]introspector) *authOrigin {
	t.Helper()
	o := &authOrigin{by: by}
	// A second Authorization beside the injected one is refused (400),
	// as by every fake: Header.Get below reads only the first.
	srv := fakekit.StartTLS(http.HandlerFunc(o.serve), &originLeaf)
	t.Cleanup(srv.Close)
	o.addr = srv.Listener.Addr().String()
	return o
}

func (o *authOrigin) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s := authSeen{Method: r.Method, Path: r.URL.Path, Token: tok}
	if in := o.by[seg]; in != nil && tok != "" {
		s.Subject, s.Active = in(r.Context(), tok)
	}
	o.mu.Lock()
	o.seen = append(o.seen, s)
	o.mu.Unlock()
	if !s.Active {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "inactive token", http.StatusUnauthorized)
		return
	}
	fmt.Fprintf(w, "hello %s", s.Subject)
}

// byPath returns what was seen for path (exact) or, ending in "*", below
// a prefix.
func (o *authOrigin) byPath(path string) []authSeen {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []authSeen
	for _, s := range o.seen {
		if s.Path == path || strings.HasSuffix(path, "*") && strings.HasPrefix(s.Path, strings.TrimSuffix(path, "*")) {
			out = append(out, s)
		}
	}
	return out
}

// tokens lists every distinct token the origin received.
func (o *authOrigin) tokens() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, s := range o.seen {
		if s.Token != "" && !seen[s.Token] {
			seen[s.Token] = true
			out = append(out, s.Token)
		}
	}
	return out
}

// fromServer introspects against an oauth2test server.
func fromServer(s *oauth2test.Server) introspector {
	return func(ctx context.Context, tok string) (string, bool) {
		info, ok := s.Introspect(ctx, tok)
		if info.Subject == "" {
			info.Subject = info.ClientID
		}
		return info.Subject, ok
	}
}

// get sends a request through the gateway with a kept-alive client and
// returns the status (0 when the request failed, which it reports), the
// headers and the time it took. It may be called from any goroutine.
func get(t *testing.T, c *http.Client, method, url, body string) (int, http.Header, time.Duration) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	start := time.Now()
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, nil, time.Since(start)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, nil, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, time.Since(start)
}

const oauth2FaultPolicy = `
workloads:
  caller:
    claims: {sub: billing-api}
    require: [jwt]
  local:
    cidrs: [127.0.0.1/32]
destinations:
  saas:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  client-secret:
    provider: static
    env: CREDGATE_E2E_OAUTH2_SECRET
  single:
    provider: oauth2
    token_url: SINGLE_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    scopes: [read]
  slow:
    provider: oauth2
    token_url: SLOW_URL
    client_id: gateway
    client_auth: client_secret_post
    client_secret: {credential: client-secret}
  short:
    provider: oauth2
    token_url: SHORT_URL
    client_id: gateway
    client_secret: {credential: client-secret}
  flaky:
    provider: oauth2
    token_url: FLAKY_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    retries: 1
    retry_backoff: 50ms
  exchange:
    provider: oauth2
    grant: token_exchange
    token_url: SINGLE_URL
    client_id: gateway
    client_secret: {credential: client-secret}
    audience: https://saas.example
rules:
  - {name: exchange, from: caller, to: saas, paths: [/single/exchange*], inject: {credential: exchange, as: bearer}}
  - {name: single, from: local, to: saas, paths: [/single/*], inject: {credential: single, as: bearer}}
  - {name: slow, from: local, to: saas, paths: [/slow/*], inject: {credential: slow, as: bearer}}
  - {name: short, from: local, to: saas, paths: [/short/*], inject: {credential: short, as: bearer}}
  - {name: flaky, from: local, to: saas, paths: [/flaky/*], inject: {credential: flaky, as: bearer}}
default: deny
`

// TestOAuth2FaultInjection drives the real binary against authorization
// servers on github.com/go-oauth2/oauth2/v4 (internal/oauth2test)
// with injected faults, behind an origin that accepts a request only if
// the server says its token is active. It is not parallel: the 2 s token
// lifetime run measures timing.
func TestOAuth2FaultInjection(t *testing.T) {
	single := oauth2test.New(oauth2test.Options{})
	slow := oauth2test.New(oauth2test.Options{TokenTTL: 6 * time.Second})
	short := oauth2test.New(oauth2test.Options{TokenTTL: 2 * time.Second})
	flaky := oauth2test.New(oauth2test.Options{})
	secret := randomToken(t)
	for _, s := range []*oauth2test.Server{single, slow, short, flaky} {
		t.Cleanup(s.Close)
		s.AddSecretClient("gateway", secret)
	}
	reportPeer(t, "oauth2: go-oauth2/oauth2/v4 fault-injection servers (internal/oauth2test) at %s, %s, %s, %s", single.URL, slow.URL, short.URL, flaky.URL)

	// The workload's identity issuer, for token exchange.
	idKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: idKey.Public(), KeyID: "id-1", Algorithm: "ES256", Use: "sig"}}}
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	jb, _ := json.Marshal(jwks)
	if err := os.WriteFile(jwksFile, jb, 0o644); err != nil {
		t.Fatal(err)
	}
	const idIssuer = "https://workloads.e2e.test"
	single.TrustIssuer(idIssuer, idKey.Public())

	o := startAuthOrigin(t, map[string]introspector{
		"single": fromServer(single), "slow": fromServer(slow), "short": fromServer(short), "flaky": fromServer(flaky),
	})
	pol := strings.NewReplacer("SINGLE_URL", single.TokenURL(), "SLOW_URL", slow.TokenURL(),
		"SHORT_URL", short.TokenURL(), "FLAKY_URL", flaky.TokenURL()).Replace(oauth2FaultPolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{otherHost + ":443": o.addr},
		Env:     []string{"CREDGATE_E2E_OAUTH2_SECRET=" + secret},
		ExtraConfig: fmt.Sprintf(`identity:
  jwt:
    issuers:
      - issuer: %s
        profile: oidc
        audiences: [credgate]
        jwks_file: %s
`, idIssuer, jwksFile),
	})
	e.secrets = append(e.secrets, secret)
	t.Cleanup(func() { e.secrets = append(e.secrets, o.tokens()...) })
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	base := "https://" + otherHost

	t.Run("100 concurrent first requests make one token request", func(t *testing.T) {
		var wg sync.WaitGroup
		statuses := make(chan int, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, _, _ := get(t, c, "GET", fmt.Sprintf("%s/single/cold-%d", base, i), "")
				statuses <- st
			}()
		}
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != http.StatusOK {
				t.Errorf("a first request got %d", st)
			}
		}
		if n := single.TokenRequests(); n != 1 {
			t.Errorf("%d token requests for 100 concurrent first requests, want exactly 1", n)
		}
		if toks := o.tokens(); len(toks) != 1 {
			t.Errorf("the origin saw %d distinct tokens, want 1", len(toks))
		}
	})

	t.Run("401 drops the cached token and an idempotent request is retried once", func(t *testing.T) {
		old := o.byPath("/single/cold-0")[0].Token
		single.Revoke(context.Background(), old)
		n := single.TokenRequests()
		if st, _, _ := get(t, c, "GET", base+"/single/after-revoke", ""); st != http.StatusOK {
			t.Fatalf("GET after revocation: %d, want 200 after one retry", st)
		}
		got := o.byPath("/single/after-revoke")
		if len(got) != 2 || got[0].Token != old || got[0].Active || got[1].Token == old || !got[1].Active {
			t.Errorf("origin saw %d attempts; want the revoked token (rejected), then a new active one", len(got))
		}
		if d := single.TokenRequests() - n; d != 1 {
			t.Errorf("%d token requests for the retry, want 1", d)
		}
		// A request with a body is never resent; its 401 goes back.
		single.Revoke(context.Background(), got[1].Token)
		if st, _, _ := get(t, c, "POST", base+"/single/post", `{"amount":1}`); st != http.StatusUnauthorized {
			t.Errorf("POST with a revoked token: %d, want 401", st)
		}
		if n := len(o.byPath("/single/post")); n != 1 {
			t.Errorf("origin saw %d POSTs, want 1", n)
		}
		if st, _, _ := get(t, c, "GET", base+"/single/after-post", ""); st != http.StatusOK {
			t.Errorf("GET after the POST's 401: %d, want 200 with a new token", st)
		}
		if s := o.byPath("/single/after-post"); len(s) != 1 || !s[0].Active {
			t.Errorf("the GET after the POST was not sent once with an active token")
		}
	})

	t.Run("token exchange with the workload's verified JWT", func(t *testing.T) {
		mint := func(sub string) string {
			sg, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: idKey}, (&jose.SignerOptions{}).WithHeader("kid", "id-1"))
			now := time.Now()
			raw, err := jwt.Signed(sg).Claims(jwt.Claims{Issuer: idIssuer, Subject: sub, Audience: jwt.Audience{"credgate"},
				IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
		wlToken := mint("billing-api")
		e.secrets = append(e.secrets, wlToken)
		resp := goClient{}.Do(t, e, clientRequest{URL: base + "/single/exchange", ProxyUserinfo: "billing:" + wlToken})
		if resp.Status != http.StatusOK || resp.Body != "hello billing-api" {
			t.Fatalf("token exchange: status %d body %q err %s; want the SaaS to see a token for billing-api", resp.Status, resp.Body, resp.Err)
		}
		last := single.Requests()[len(single.Requests())-1]
		if last.Get("subject_token") != wlToken || last.Get("audience") != "https://saas.example" {
			t.Errorf("the token request did not carry the workload's token as subject_token")
		}
		// Cached per workload token: a second call makes no request.
		n := single.TokenRequests()
		if r := (goClient{}).Do(t, e, clientRequest{URL: base + "/single/exchange-2", ProxyUserinfo: "billing:" + wlToken}); r.Status != http.StatusOK {
			t.Errorf("second exchange call: %d", r.Status)
		}
		if single.TokenRequests() != n {
			t.Errorf("the exchanged token was not cached for the workload")
		}
	})

	t.Run("a slow endpoint does not block requests with a cached token", func(t *testing.T) {
		if st, _, _ := get(t, c, "GET", base+"/slow/warm", ""); st != http.StatusOK {
			t.Fatalf("warm-up: %d", st)
		}
		first := o.byPath("/slow/warm")[0].Token
		slow.Hold()
		defer slow.Release()
		// The token lives 6s (5.4s after the margin); the cache refreshes
		// it from 3.6s on, in the background, while requests go on.
		n := 0
		waitFor(t, 8*time.Second, "a background refresh held by the slow endpoint", func() error {
			n++
			if st, _, _ := get(t, c, "GET", fmt.Sprintf("%s/slow/poll-%d", base, n), ""); st != http.StatusOK {
				t.Fatalf("poll %d: %d", n, st)
			}
			if slow.Held() == 0 {
				return fmt.Errorf("no token request held yet")
			}
			return nil
		})
		for i := range 5 {
			st, _, d := get(t, c, "GET", fmt.Sprintf("%s/slow/during-%d", base, i), "")
			if st != http.StatusOK || d > time.Second {
				t.Errorf("request %d during the held refresh: %d after %v; want 200 at once with the cached token", i, st, d)
			}
		}
		for _, s := range o.byPath("/slow/during-*") {
			if s.Token != first {
				t.Errorf("a request during the held refresh did not use the cached token")
			}
		}
		slow.Release()
		waitFor(t, 10*time.Second, "the refreshed token in use", func() error {
			n++
			p := fmt.Sprintf("/slow/after-%d", n)
			if st, _, _ := get(t, c, "GET", base+p, ""); st != http.StatusOK {
				return fmt.Errorf("status %d", st)
			}
			if s := o.byPath(p); len(s) == 0 || s[len(s)-1].Token == first {
				return fmt.Errorf("still the first token")
			}
			return nil
		})
	})

	t.Run("2s tokens are refreshed ahead and never used expired", func(t *testing.T) {
		// 10 s rather than the 30 s, to keep `make test` short on
		// two cores: five token lifetimes, about eight refreshes.
		const run = 10 * time.Second
		deadline := time.Now().Add(run)
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad, total := 0, 0
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					st, _, _ := get(t, c, "GET", fmt.Sprintf("%s/short/w%d-%d", base, w, i), "")
					mu.Lock()
					total++
					if st != http.StatusOK {
						bad++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		seen := o.byPath("/short/*")
		inactive := 0
		for _, s := range seen {
			if !s.Active {
				inactive++
			}
		}
		n := short.TokenRequests()
		t.Logf("%d requests in %v, %d token requests", total, run, n)
		if bad != 0 || inactive != 0 {
			t.Errorf("%d of %d requests failed; the origin saw %d expired or unknown tokens", bad, total, inactive)
		}
		if n < 4 || n > 12 {
			t.Errorf("%d token requests in %v with 2s tokens; want about one per 1.2s (refresh ahead, not per request)", n, run)
		}
	})

	t.Run("token endpoint 500 answers 503 with Retry-After and recovers", func(t *testing.T) {
		flaky.FailWith(http.StatusInternalServerError)
		st, h, _ := get(t, c, "GET", base+"/flaky/down-0", "")
		if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || h.Get("X-Credgate-Reason") != "credential_unavailable" {
			t.Fatalf("token endpoint 500: %d Retry-After %q reason %q; want 503 with Retry-After", st, h.Get("Retry-After"), h.Get("X-Credgate-Reason"))
		}
		for i := 1; i <= 5; i++ {
			if st, _, _ := get(t, c, "GET", fmt.Sprintf("%s/flaky/down-%d", base, i), ""); st != http.StatusServiceUnavailable {
				t.Errorf("request %d while failing: %d, want 503", i, st)
			}
		}
		if n := flaky.TokenRequests(); n > 4 {
			t.Errorf("%d token requests for 6 requests while failing; the error should be cached for the backoff", n)
		}
		if s := o.byPath("/flaky/*"); len(s) != 0 {
			t.Errorf("the origin saw %d requests without a credential (fail closed)", len(s))
		}
		flaky.FailWith(0)
		n := 0
		waitFor(t, 15*time.Second, "recovery after the token endpoint healed", func() error {
			n++
			if st, _, _ := get(t, c, "GET", fmt.Sprintf("%s/flaky/up-%d", base, n), ""); st != http.StatusOK {
				return fmt.Errorf("status %d", st)
			}
			return nil
		})
	})
}
